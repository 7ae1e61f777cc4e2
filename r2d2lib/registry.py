"""Every registry of r2d2lib.

The kinds mmengine knows (models, datasets, transforms, metrics, hooks, loops)
are children of mmengine's roots, so the Runner finds them. The component
families that only r2d2lib composes (encoders, fusions, heads, losses, queues,
distillers, objectives) are roots of their own: mmengine allows one child per scope
under a parent, and these are built by the models, never by the Runner.

Components register under their class name; configs refer to them with
``type='ClassName'`` and ``default_scope = 'r2d2lib'``. ``locations`` lists the
modules that register into each registry, so building from a config imports
what it needs without the caller importing anything.
"""
from mmengine import registry as mmengine_registry
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

# Assembled vision-language models (R2D2Model, ...) and data preprocessors.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='r2d2lib',
                  locations=['r2d2lib.models', 'r2d2lib.models.captioners', 'r2d2lib.models.generators'])
# Image and text encoders: tokens in, token sequences out.
ENCODERS = Registry('encoder', scope='r2d2lib',
                    locations=['r2d2lib.models.encoders', 'r2d2lib.models.generators'])
# Cross-modal fusion modules (the cross encoders).
FUSIONS = Registry('fusion', scope='r2d2lib',
                   locations=['r2d2lib.models.fusion', 'r2d2lib.models.captioners',
                              'r2d2lib.models.generators'])
# Parameter-only heads: projections, matching (ITM) heads.
HEADS = Registry('head', scope='r2d2lib',
                 locations=['r2d2lib.models.heads'])
# Losses: features in, named losses out.
LOSSES = Registry('loss', scope='r2d2lib',
                  locations=['r2d2lib.models.losses', 'r2d2lib.models.captioners'])
# Feature queues (weighted ring buffers).
QUEUES = Registry('queue', scope='r2d2lib', locations=['r2d2lib.models.queues'])
# Momentum teachers and distillation state.
DISTILLERS = Registry('distiller', scope='r2d2lib', locations=['r2d2lib.models.distillers'])
# Training objectives: a model's losses, teacher, queues and their weights (model.objective).
OBJECTIVES = Registry('objective', scope='r2d2lib',
                      locations=['r2d2lib.models.objectives', 'r2d2lib.models.captioners'])
# Datasets (retrieval annotations, the toy shapes corpus, ...).
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='r2d2lib',
                    locations=['r2d2lib.datasets', 'r2d2lib.datasets.captions'])
# Data pipeline transforms.
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='r2d2lib',
                      locations=['r2d2lib.datasets.transforms'])
# Evaluation metrics.
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='r2d2lib',
                   locations=['r2d2lib.evaluation'])
# Training and evaluation hooks.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='r2d2lib',
                 locations=['r2d2lib.engine', 'r2d2lib.datasets.data_report'])
# Training, validation and test loops.
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='r2d2lib',
                 locations=['r2d2lib.engine'])

# The other mmengine roots the Runner builds from while ``default_scope='r2d2lib'``: an r2d2lib child of
# each, so mmengine finds the scope in every registry tree (else it warns "Failed to search registry with
# scope r2d2lib" and falls back) and a plain name resolves here first, then in mmengine's root.
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=mmengine_registry.OPTIM_WRAPPERS, scope='r2d2lib',
                          locations=['r2d2lib.engine.optim_wrappers'])
_MMENGINE_CHILDREN = ('DATA_SAMPLERS', 'EVALUATOR', 'FUNCTIONS', 'LOG_PROCESSORS', 'MODEL_WRAPPERS',
                      'OPTIMIZERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'RUNNERS',
                      'RUNNER_CONSTRUCTORS', 'STRATEGIES', 'VISBACKENDS', 'VISUALIZERS',
                      'WEIGHT_INITIALIZERS')
MMENGINE_CHILDREN = {name: Registry(name.lower(), parent=getattr(mmengine_registry, name), scope='r2d2lib')
                     for name in _MMENGINE_CHILDREN}
