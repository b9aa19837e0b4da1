"""What each trainer runs where: the target of its training rounds, the step those rounds
compute (:class:`~pipeline.run.coordinator.Step`) and where its trained phases are tested.

- ``ffm``: data and error passes on the chips (forward only), tested on the chips;
- ``pat``: physics-aware training (:mod:`optics.core.pat`): the data pass and the loss on the
  chips, the error pass through each chip's twin, tested on the chips;
- ``insilico``: backprop through the twin, tested on the chips;
- ``ideal``: backprop through the twin, tested on the twin (the upper bound).
"""

from __future__ import annotations

from pipeline.config import TrainerKind
from pipeline.run.coordinator import Step, Target

TRAIN_ON = {
    TrainerKind.FFM: Target.CHIP,
    TrainerKind.PAT: Target.CHIP,
    TrainerKind.INSILICO: Target.TWIN,
    TrainerKind.IDEAL: Target.TWIN,
}
TRAIN_STEP = {
    TrainerKind.FFM: Step.FORWARD_ONLY,
    TrainerKind.PAT: Step.PHYSICS_AWARE,
    TrainerKind.INSILICO: Step.FORWARD_ONLY,
    TrainerKind.IDEAL: Step.FORWARD_ONLY,
}
DEPLOY_ON = {
    TrainerKind.FFM: Target.CHIP,
    TrainerKind.PAT: Target.CHIP,
    TrainerKind.INSILICO: Target.CHIP,
    TrainerKind.IDEAL: Target.TWIN,
}
