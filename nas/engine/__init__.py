"""The training engine: one loop, one evaluator, one BatchNorm re-estimation, one seeding rule, one checkpoint,
one precision and memory-format policy, and data held and augmented on the training device.

Every training of SwiftNAS runs through it (the search's proxy, the fidelity protocols, ``nas ablate``,
``nas retrain``, ``nas supernet train``); protocols and recipes are values it runs. Modules, from the bottom:

- ``policy``: device, autocast dtype, channels_last, the seeding rule;
- ``resident``: datasets held on the device as uint8 at their stored size, once per process;
- ``augment``: batched augmentation with per-image parameters drawn per epoch;
- ``batches``: an epoch's batches from resident images or from a streaming loader;
- ``bn``, ``evaluate``: BatchNorm re-estimation and scoring without per-batch host syncs;
- ``step``: a training as a value, and its update;
- ``loop``, ``checkpoint``: the loop and its exact resume.
"""
from .augment import Augmentation
from .batches import EpochSource, ResidentBatches, StreamingBatches, eval_batches
from .bn import reestimate_bn
from .checkpoint import (CHECKPOINT_EVERY_S, STATE_FILE, CheckpointMismatch, load_checkpoint, restore_checkpoint,
                         save_checkpoint)
from .evaluate import Scores, evaluate
from .loop import Diverged, LoopState, fit
from .policy import Policy, PolicyError, epoch_seed, seed_epoch, seed_init
from .resident import ResidentImages, resident
from .step import Training, backward, classification_step, eager_update

__all__ = ["Augmentation", "backward", "CHECKPOINT_EVERY_S", "CheckpointMismatch", "classification_step",
           "Diverged", "eager_update", "epoch_seed", "EpochSource", "eval_batches", "evaluate", "fit",
           "load_checkpoint", "LoopState", "Policy", "PolicyError", "reestimate_bn", "resident",
           "ResidentBatches", "ResidentImages", "restore_checkpoint", "save_checkpoint", "Scores",
           "seed_epoch", "seed_init", "STATE_FILE", "StreamingBatches", "Training"]
