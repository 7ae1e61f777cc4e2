"""mmengine's Runner with strict checkpoint loading."""
from mmengine.runner import Runner


class StrictRunner(Runner):
    """An mmengine Runner whose ``load_from`` / ``--resume`` loads fail on missing or extra weights.

    mmengine loads checkpoints with ``strict=False`` and only logs the keys it
    could not match, so a wrong file evaluates or trains a half-random model.
    Here every load is strict: the error names the keys. ``tools/train.py`` and
    ``tools/test.py`` use this runner.
    """

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = True,
                        revise_keys=((r'^module.', ''),)):
        return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                       revise_keys=list(revise_keys))
