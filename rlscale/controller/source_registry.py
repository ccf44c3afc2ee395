"""Every kind of metric source, by its ``metrics.source`` name.

Adding a source is one module (the source and its :class:`~rlscale.controller.sources.
SourceSettings`) and one entry here; the config parser and the command line need no change.
"""

from __future__ import annotations

from collections.abc import Callable

from rlscale.configschema import Section
from rlscale.controller.pod_scrape import PodScrapeSettings
from rlscale.controller.prometheus import PrometheusSettings
from rlscale.controller.sources import SourceSettings

SOURCES: dict[str, Callable[[Section], SourceSettings]] = {
    PodScrapeSettings.source: PodScrapeSettings.parse,
    PrometheusSettings.source: PrometheusSettings.parse,
}
"""``metrics.source`` -> the parser of the rest of the ``metrics:`` section."""


def parse_metrics(section: Section) -> SourceSettings:
    """The ``metrics:`` section: ``source`` (default ``pods``) picks the kind, whose parser
    reads the other keys."""
    source = section.string("source", PodScrapeSettings.source, tuple(SOURCES))
    return SOURCES[source](section)
