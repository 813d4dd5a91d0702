"""Every hold question, answered in one place.

- `scopes`: what a hold names, placing one (it binds before `place_hold` returns) and
  releasing it;
- `gate`: the shared/exclusive protocol that makes it bind: every unit of work that acts
  under the holds reads them and commits inside `HoldGate.shared()`;
- `rows`: holds compiled into row conditions (directly, down belongs_to, up cascades);
- `keyed`: holds over objects, Redis keys and archived rows, through their subjects.

Nothing outside this package looks at a hold's scope to decide what it keeps.
"""

from lethe.holds.gate import HoldGate, gate_of
from lethe.holds.keyed import HeldValues, archived_row_held, held_subjects, holds_reaching
from lethe.holds.rows import CASCADING, HoldScopes
from lethe.holds.scopes import (
    Scope,
    on_workspace,
    parse_scope,
    place_hold,
    release_hold,
    shown_scope,
)

__all__ = ["CASCADING", "HeldValues", "HoldGate", "HoldScopes", "Scope", "archived_row_held",
           "gate_of", "held_subjects", "holds_reaching", "on_workspace", "parse_scope",
           "place_hold", "release_hold", "shown_scope"]
