"""The datasets: one module each, one ``@register_dataset`` on a loader.

Importing this package registers every module in it, so a new dataset is one file.
"""

from coretune.registry import import_submodules

import_submodules(__name__)
