"""Stubs under the node ids used before the rename: a saved workflow or API prompt that still
uses one is refused in validation with a message naming the new id and the migration, instead of
ComfyUI's bare "node does not exist". The frontend migrates UI workflows on load (web/)."""

from __future__ import annotations

from comfy_api.latest import io

from ..steering.renamed_nodes import RENAMED_NODES

MIGRATION_HINT = (
    "Open the workflow in the ComfyUI frontend (it is migrated on load) and save it, or run "
    "`safety-steer migrate-workflow FILE`."
)


def renamed_stub(old_id: str, new_node: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """A deprecated node under ``old_id`` with ``new_node``'s sockets that never runs."""
    new_schema = new_node.define_schema()
    message = f"The node {old_id} was renamed to {new_schema.node_id}. {MIGRATION_HINT}"

    class RenamedNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> io.Schema:
            schema = new_node.define_schema()
            schema.node_id = old_id
            schema.display_name = f"{schema.display_name} (renamed: {new_schema.node_id})"
            schema.description = message
            schema.is_deprecated = True
            return schema

        @classmethod
        def validate_inputs(cls, **_) -> str:
            return message  # takes every input on purpose: nothing here may pass

        @classmethod
        def execute(cls, **_) -> io.NodeOutput:
            raise ValueError(message)

    RenamedNode.__name__ = RenamedNode.__qualname__ = f"Renamed{old_id}"
    return RenamedNode


def renamed_stubs(nodes: list[type[io.ComfyNode]]) -> list[type[io.ComfyNode]]:
    by_id = {node.define_schema().node_id: node for node in nodes}
    return [renamed_stub(old, by_id[new]) for old, new in RENAMED_NODES.items()]
