"""IR -> spec text: the chain rebuilt from the DAG, res[...] and cat[...] from its dominators."""

from __future__ import annotations

from .errors import CnnCalcError
from .ir import Graph, Node, show_shape


def to_spec(graph: Graph) -> str:
    """The equivalent spec chain: res[...;...] and cat[...] rebuilt from the DAG, repeats written item*N."""
    if graph.unsupported:
        raise CnnCalcError(f"{graph.name} has ops cnncalc does not know ({', '.join(graph.unsupported[:3])}), "
                           "so it has no spec", hint="only fully supported models can be written as a spec")
    producers = {node.name: node for node in graph.nodes}
    dominators = _immediate_dominators(graph)
    seen: set[str] = set()
    items = _chain(graph, producers, dominators, graph.input_name, graph.output, seen)
    extra = [node.name for node in graph.nodes if node.name not in seen]
    if extra:
        raise CnnCalcError(f"{graph.name} cannot be written as a spec chain: layers {', '.join(extra[:3])} are not "
                           "on one series of blocks from input to output",
                           hint="the spec language writes chains, res[...] and cat[...] blocks")
    body = _join_items(graph, items)
    return f"{show_shape(graph.input_shape)}|{body}" if body else show_shape(graph.input_shape)


_Item = tuple[str, str, str]  # spec text, tensor it reads, tensor it makes


def _immediate_dominators(graph: Graph) -> dict[str, str]:
    """For each tensor, the nearest tensor every path from the input to it passes through (the fork of a join)."""
    order = {graph.input_name: 0, **{node.name: index + 1 for index, node in enumerate(graph.nodes)}}
    idom = {graph.input_name: graph.input_name}

    def meet(a: str, b: str) -> str:
        while a != b:
            while order[a] > order[b]:
                a = idom[a]
            while order[b] > order[a]:
                b = idom[b]
        return a

    for node in graph.nodes:
        if not node.inputs:
            raise CnnCalcError(f"layer {node.name} reads no tensor, so it has no place in a spec chain")
        fork = node.inputs[0]
        for other in node.inputs[1:]:
            fork = meet(fork, other)
        idom[node.name] = fork
    return idom


def _chain(graph: Graph, producers: dict[str, Node], dominators: dict[str, str], start: str, end: str,
           seen: set[str]) -> list[_Item]:
    """The items that compute `end` from `start`, walking back; joins recurse into their branches."""
    items: list[_Item] = []
    tensor = end
    while tensor != start:
        node = producers.get(tensor)
        if node is None or node.name in seen:
            raise CnnCalcError(f"{graph.name} cannot be written as a spec chain: branches share layer {tensor}",
                               hint="the spec language writes chains, res[...] and cat[...] blocks")
        seen.add(node.name)
        if len(node.inputs) == 1:
            items.append((node.op.describe(), node.inputs[0], node.name))
            tensor = node.inputs[0]
            continue
        fork = dominators[node.name]
        branches = [_join_items(graph, _chain(graph, producers, dominators, fork, value, seen))
                    for value in node.inputs]
        items.append((_join_text(graph, node, branches), fork, node.name))
        tensor = fork
    items.reverse()
    return items


def _join_text(graph: Graph, node: Node, branches: list[str]) -> str:
    """A join written with the spec grammar's block word; an empty branch is the identity."""
    word = node.op.spec_join
    if not word:
        raise CnnCalcError(f"layer {node.name} ({node.op.op_type}) joins {len(branches)} branches, "
                           "which the spec language cannot write", hint="only Add (res) and Concat (cat) join")
    if word == "res":
        filled = [branch for branch in branches if branch]
        if len(filled) == 1:
            return f"res[{filled[0]}]"
        return f"res[{' ; '.join(branch or 'ID' for branch in branches)}]"
    return f"{word}[{' ; '.join(branch or 'ID' for branch in branches)}]"


def _join_items(graph: Graph, items: list[_Item]) -> str:
    """Items joined with `|`, runs of an identical shape-preserving item (or group) written once with *N."""
    parts: list[str] = []
    index = 0
    while index < len(items):
        period, count = _best_run(graph, items, index)
        # a run that still fits one item later reads better: res[...]|ReLU repeated, not ReLU|res[...]
        if count > 1 and _best_run(graph, items, index + 1, period) == (period, count):
            period, count = 1, 1
        unit_text = "|".join(text for text, _, _ in items[index:index + period])
        if count == 1:
            parts.append(unit_text)
        else:
            parts.append(f"{unit_text}*{count}" if period == 1 else f"[{unit_text}]*{count}")
        index += period * count
    return "|".join(parts)


def _best_run(graph: Graph, items: list[_Item], index: int, only: int | None = None) -> tuple[int, int]:
    """(period, count) of the longest run of a repeated unit starting at `index` whose output shape is its input's."""
    best_period, best_count = 1, 1
    periods = [only] if only else range(1, (len(items) - index) // 2 + 1)
    for period in periods:
        unit = [text for text, _, _ in items[index:index + period]]
        if len(unit) < period or graph.shapes[items[index][1]] != graph.shapes[items[index + period - 1][2]]:
            continue
        count = 1
        while [text for text, _, _ in items[index + count * period:index + (count + 1) * period]] == unit:
            count += 1
        if count > 1 and period * count > best_period * best_count:
            best_period, best_count = period, count
    return best_period, best_count
