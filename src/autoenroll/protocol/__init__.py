"""What the server and the agent agree on: the numbered errors of the guide and the wire format.

Nothing here imports Django: the agent installs without it.
"""

from .errors import CATALOGUE, EnrollmentError, GuideError

__all__ = ["CATALOGUE", "EnrollmentError", "GuideError"]
