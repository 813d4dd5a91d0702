"""String shapes the API accepts. PostgreSQL text cannot hold NUL, and ids, names and
identity values have no business holding control characters: such input is a 422
here, not a store error later."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

NO_CONTROLS = r"^[^\x00-\x1f\x7f]+$"
NO_NUL = r"^[^\x00]+$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROLS)]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=320,
                                                 pattern=NO_CONTROLS)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
