"""The guide's 41 numbered errors (section 8.1.1), as one catalogue for server, agent and admin pages.

Codes 1-30 are raised by the server, 31-41 by the agent. The messages are kept to the letter,
trailing dots included, because admins search logs for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal


@dataclass(frozen=True)
class GuideError:
    code: int
    side: Literal["server", "client"]
    message: str
    potential_reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


def _load() -> dict[int, GuideError]:
    raw = json.loads(resources.files(__package__).joinpath("errors.json").read_text(encoding="utf-8"))
    return {e["code"]: GuideError(e["code"], e["side"], e["message"], tuple(e["potential_reasons"])) for e in raw}


CATALOGUE: dict[int, GuideError] = _load()


class EnrollmentError(Exception):
    """A refusal with the guide's number; `detail` is for logs only, never sent to the client."""

    def __init__(self, code: int, detail: str = "", *, http_status: int | None = None) -> None:
        self.error = CATALOGUE[code]
        self.detail = detail
        self.http_status = http_status  # when the usual status of the number would mislead (see messages)
        super().__init__(f"Error {code}: {self.error.message}" + (f" ({detail})" if detail else ""))

    @property
    def code(self) -> int:
        return self.error.code

    @property
    def message(self) -> str:
        return self.error.message
