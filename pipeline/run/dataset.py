"""How the chip actors get the task's split: from one holder actor per run.

Ray warns on the console (``core_worker ... the actor restart will fail``) when an actor that
may be restarted takes a constructor argument from the object store, and rightly: a restart
re-reads its arguments, and an argument no one else holds may be gone. Here the split lives in a
:class:`SplitHolder` actor that is never restarted and takes no CPU; a chip actor is constructed
with a :class:`SplitSource`, the holder's name (an actor handle as an argument would count as
one in the object store), and fetches the split in its constructor, again after every restart.
A split passed as is (tests, a chip in this process) is used directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from optics.core.data import Split


class SplitHolder:
    """Holds the split for the run (a Ray actor, ``num_cpus=0``, no restarts)."""

    def __init__(self, split: Split):
        self._split = split

    def split(self) -> Split:
        return self._split


@dataclass(frozen=True)
class SplitSource:
    """A chip actor's way to the split: the name of the run's holder (and, in the driver, the
    holder's handle, which keeps it alive; not sent to the chips)."""

    name: str
    namespace: str
    holder: object = field(default=None, compare=False)

    def __reduce__(self):  # to a chip actor: the name only
        return (SplitSource, (self.name, self.namespace))

    def fetch(self) -> Split:
        import ray

        return ray.get(ray.get_actor(self.name, namespace=self.namespace).split.remote())


def hold_split(split: Split) -> SplitSource:
    """Start the run's holder with ``split`` (through the object store once); keep the returned
    source for the run: the holder lives as long as the driver holds its handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    context = ray.get_runtime_context()
    name, namespace = f"ffm-split-{uuid.uuid4().hex}", context.namespace
    here = NodeAffinitySchedulingStrategy(context.get_node_id(), soft=False)  # lives and dies with the driver's node
    options = {"num_cpus": 0, "max_restarts": 0, "name": name, "namespace": namespace, "scheduling_strategy": here}
    holder = ray.remote(SplitHolder).options(**options).remote(ray.put(split))
    return SplitSource(name, namespace, holder)


def resolve_split(split: Split | SplitSource) -> Split:
    """The split itself, fetched from the holder when given a source."""
    return split.fetch() if isinstance(split, SplitSource) else split
