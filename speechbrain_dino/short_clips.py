"""Where encoders exported by earlier versions find their front end: their ``hyperparams.yaml``
names ``speechbrain_dino.short_clips.MinimumLengthFbank``, which now lives in
:mod:`speechbrain_dino.data.short_clips` (new exports name that module)."""
from speechbrain_dino.data.short_clips import MinimumLengthFbank

__all__ = ["MinimumLengthFbank"]
