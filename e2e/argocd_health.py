"""Run the chart's Argo CD health checks (Lua) on an object, as Argo CD does.

Argo CD evaluates `resource.customizations.health.<group>_<kind>` with gopher-lua (Lua
5.1), the object as the global `obj`, and reads `{status, message}` back. lupa embeds a
real Lua; the scripts use nothing beyond Lua 5.1.
"""

from __future__ import annotations

import pathlib
from typing import Any

import lupa

ROOT = pathlib.Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "charts" / "modelserve" / "files" / "argocd"
SCRIPTS = {"ModelDeployment": "modeldeployment-health.lua",
           "ModelVersion": "modelversion-health.lua"}


def _to_lua(lua: lupa.LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):  # JSON arrays become 1-based sequences, as in Argo CD
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) that Argo CD would show for `obj`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    script = (LUA_DIR / SCRIPTS[obj["kind"]]).read_text()
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(script)
    return result["status"], result["message"]
