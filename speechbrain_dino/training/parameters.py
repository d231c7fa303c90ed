"""Which parameters an optimiser updates, and how: DDP unwrapping and weight-decay groups."""
from __future__ import annotations

from typing import Iterable, List, Set, Union

from torch import nn

#: Key marking an optimiser parameter group as subject to weight decay (see
#: :func:`param_groups_for_weight_decay`). Groups without the key count as decayed.
APPLY_WEIGHT_DECAY = "apply_weight_decay"


def unwrap_parallel(module: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``, else ``module`` itself."""
    if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return module.module
    return module


def param_groups_for_weight_decay(
    modules: Union[nn.Module, Iterable[nn.Module]], weight_decay: float
) -> List[dict]:
    """Optimiser groups: decayed weights, and undecayed biases, norm and weight-norm scales.

    No decay goes to 1-D parameters (biases, BatchNorm/LayerNorm scales and shifts), to the
    weight-norm magnitude ``g`` (``...original0``), as in the paper, and to the parameters a
    submodule names in its ``no_weight_decay()`` (a set of names relative to it, the convention
    of timm; e.g. SDPN's prototypes, see ``DINOHead``). Only trainable parameters are
    included, each once. Every group carries ``APPLY_WEIGHT_DECAY`` (True/False) so that
    :meth:`DINOSchedule.apply` schedules weight decay on the decayed group only; empty groups are
    left out.
    """
    module_list = [modules] if isinstance(modules, nn.Module) else list(modules)
    decayed: List[nn.Parameter] = []
    undecayed: List[nn.Parameter] = []
    seen = set()
    for module in module_list:
        module = unwrap_parallel(module)
        exempt = exempt_from_weight_decay(module)
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            no_decay = parameter.ndim <= 1 or name.endswith("parametrizations.weight.original0") or name in exempt
            (undecayed if no_decay else decayed).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": weight_decay, APPLY_WEIGHT_DECAY: True},
        {"params": undecayed, "weight_decay": 0.0, APPLY_WEIGHT_DECAY: False},
    ]
    return [group for group in groups if group["params"]]


def exempt_from_weight_decay(module: nn.Module) -> Set[str]:
    """Full names (relative to ``module``) of the parameters its submodules list in their
    ``no_weight_decay()``."""
    names: Set[str] = set()
    for prefix, submodule in module.named_modules():
        listed = getattr(submodule, "no_weight_decay", None)
        if callable(listed):
            names.update(f"{prefix}.{name}" if prefix else name for name in listed())
    return names
