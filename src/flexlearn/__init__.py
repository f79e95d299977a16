"""flexlearn: Forward Learning from EXperience (FLEX, arXiv 2511.06449).

An agent gets better with experience without touching model weights: it explores training problems with an
actor and a critic, distils what worked and what failed into an experience library, and retrieves from that
library when it meets a new problem.
"""

from flexlearn.errors import FlexError
from flexlearn.experience import Event, Experience, Level, Provenance, Zone

__version__ = "0.1.0"

__all__ = ["Event", "Experience", "FlexError", "Level", "Provenance", "Zone", "__version__"]
