"""The chain language: every token form, names, node naming, and every error with its caret."""

from __future__ import annotations

import pytest

from cnncalc.errors import CnnCalcError, SpecError
from cnncalc.ir import show_shape
from cnncalc.spec import MAX_LAYERS, parse, parse_shape


def out(text: str, **kwargs) -> str:
    """The output shape of a spec as HxWxC."""
    graph = parse(text, **kwargs)
    return show_shape(graph.shapes[graph.output])


def fails(text: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text, **kwargs)
    return info.value


def ops(text: str) -> list[str]:
    return [node.op.op_type for node in parse(text).nodes]


# ---- the design notes' two examples ---------------------------------------------------------------
def test_design_example_full_resolution_then_pool():
    graph = parse("224x224x32|3x3x32x64(p=1)|224x224x64|MP|112x112x64")
    assert [node.name for node in graph.nodes] == ["conv1", "mp1"]
    # (224 + 2*1 - 3) / 1 + 1 = 224, then the 2x2 pool halves it: 112
    assert show_shape(graph.shapes["conv1"]) == "224x224x64"
    assert show_shape(graph.shapes[graph.output]) == "112x112x64"
    assert graph.input_shape == (32, 224, 224)


def test_design_example_strided_without_padding_fails_and_suggests_p1():
    text = "224x224x32|3x3x32x64(p=0,s=2)|112x112x64"
    error = fails(text)
    # floor((224 + 0 - 3) / 2) + 1 = 111: the conv gives 111x111x64, not the 112x112x64 written
    assert "checkpoint 112x112x64 does not hold" in error.message
    assert "the tensor here is 111x111x64" in error.message
    assert "3x3x32x64(p=0,s=2), gives 111x111x64" in error.message
    # with p=1: floor((224 + 2 - 3) / 2) + 1 = 112
    assert error.hint == "p=1 makes it hold: write 3x3x32x64(p=1,s=2)"
    assert (error.pos, error.length) == (text.index("112x112x64"), len("112x112x64"))
    assert error.render().splitlines()[1:3] == [f"  {text}", "  " + " " * text.index("112x") + "^" * 10]


# ---- token forms ------------------------------------------------------------------------------------
def test_conv_sizes_and_options():
    graph = parse("32x32x8|3x3x8x16(p=1,s=2,d=1,g=2,b=0)")
    conv = graph.nodes[0].op
    assert (conv.kernel_shape, conv.in_channels, conv.out_channels) == ((3, 3), 8, 16)
    assert (conv.pads, conv.strides, conv.group, conv.bias) == ((1, 1, 1, 1), (2, 2), 2, False)
    # floor((32 + 2 - 3) / 2) + 1 = 16
    assert show_shape(graph.shapes["conv1"]) == "16x16x16"


def test_conv_without_options_and_with_same_padding():
    assert out("10x10x4|1x1x4x2") == "10x10x2"
    assert out("10x10x4|5x5x4x2(p=same)") == "10x10x2"
    assert out("10x10x4|5x5x4x2(p=same,s=2)") == "5x5x2"  # ceil(10 / 2)


def test_depthwise_flag_sets_groups_to_cin():
    graph = parse("16x16x12|3x3x12x12(dw,p=1)")
    assert graph.nodes[0].op.group == 12
    assert graph.nodes[0].name == "dwconv1"


def test_positional_and_keyword_options():
    graph = parse("8x8x3|MP(3,s=1,p=1)|FC(10)|DO(0.25)|LReLU(0.2)")
    pool, _flatten, fc, dropout, leaky = (node.op for node in graph.nodes)
    assert (pool.kernel_shape, pool.strides, pool.pads) == ((3, 3), (1, 1), (1, 1, 1, 1))
    assert fc.out_features == 10 and dropout.ratio == 0.25 and leaky.alpha == 0.2


def test_whole_numbers_after_a_keyword_continue_its_value():
    # p=1,0,1,0 is one padding (top, left, bottom, right): height 8 + 1 + 1, width 8 + 0 + 0
    graph = parse("8x8x3|MP(k=2,p=1,0,1,0,s=1)")
    assert graph.nodes[0].op.pads == (1, 0, 1, 0)
    # (10 - 2) / 1 + 1 = 9 rows, (8 - 2) / 1 + 1 = 7 columns
    assert show_shape(graph.shapes["mp1"]) == "9x7x3"


def test_pool_defaults_and_ceil_mode():
    assert out("7x7x2|MP") == "3x3x2"  # floor((7 - 2) / 2) + 1
    assert out("7x7x2|MP(ceil=1)") == "4x4x2"  # ceil((7 - 2) / 2) + 1
    assert out("8x8x2|AP(2)|LP(2)") == "2x2x2"


def test_every_operator_name_and_alias_resolves():
    text = ("16x16x4|ReLU|ReLU6|LReLU|Sigmoid|Tanh|Softmax|LogSoftmax|BN|DO|ID|Clip(min=-1,max=1)"
            "|MaxPool|AvgPool|AveragePool|LpPool|GlobalMaxPool|Flatten|Dense(5)|Linear(4)|Dropout|BatchNorm")
    assert ops(text) == ["Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
                         "BatchNormalization", "Dropout", "Identity", "Clip", "MaxPool", "AveragePool",
                         "AveragePool", "LpPool", "GlobalMaxPool", "Flatten", "Gemm", "Gemm", "Dropout",
                         "BatchNormalization"]


def test_names_sizes_and_keywords_are_case_insensitive_and_whitespace_is_ignored():
    text = " 16 X 16 x 4 |\n  relu | RELU |mp( K = 2 ) |  Res[ 3x3x4x4( P=1 ) ] | CAT[ relu ; Bn ] | gap "
    assert ops(text) == ["Relu", "Relu", "MaxPool", "Conv", "Add", "Relu", "BatchNormalization", "Concat",
                         "GlobalAveragePool"]
    assert out(text) == "1x1x8"


def test_checkpoints_make_no_nodes_and_a_vector_is_1x1xF():
    graph = parse("8x8x3|8x8x3|ReLU|8x8x3|GAP|1x1x3|FC(10)|1x1x10")
    assert [node.name for node in graph.nodes] == ["relu1", "gap1", "flatten1", "fc1"]


def test_a_spec_of_only_an_input_has_no_layers():
    graph = parse("4x5x6")
    assert graph.nodes == () and graph.output == "input" and graph.input_shape == (6, 4, 5)


def test_group_is_a_sub_chain():
    assert ops("8x8x3|[3x3x3x4(p=1)|ReLU]|[[ID]]") == ["Conv", "Relu", "Identity"]


def test_res_with_identity_shortcut_adds_the_block_input():
    graph = parse("8x8x4|res[3x3x4x4(p=1)|BN]")
    add = graph.nodes[-1]
    assert add.op.op_type == "Add" and add.name == "add1"
    assert add.inputs == ("bn1", "input")
    assert [node.block for node in graph.nodes] == ["res1/main", "res1/main", "res1"]


def test_res_with_projection_shortcut():
    graph = parse("8x8x4|res[3x3x4x8(s=2,p=1)|BN ; 1x1x4x8(s=2)|BN]|ReLU")
    add = graph.node("add1")
    assert add.inputs == ("bn1", "bn2")
    assert [node.block for node in graph.nodes] == ["res1/main"] * 2 + ["res1/shortcut"] * 2 + ["res1", ""]
    assert show_shape(graph.shapes[graph.output]) == "4x4x8"  # floor((8 + 2 - 3) / 2) + 1 = 4


def test_cat_joins_branches_on_channels():
    # the inception 3a shape: 64 + 128 + 32 + 32 = 256 channels
    graph = parse("28x28x192|cat[1x1x192x64 ; 1x1x192x96|3x3x96x128(p=1) ; 1x1x192x16|3x3x16x32(p=1) ;"
                  " MP(3,s=1,p=1)|1x1x192x32]")
    concat = graph.nodes[-1]
    assert concat.op.op_type == "Concat" and concat.name == "concat1" and len(concat.inputs) == 4
    assert show_shape(graph.shapes[graph.output]) == "28x28x256"
    assert graph.node("mp1").block == "cat1/branch4"


def test_repeat_instantiates_fresh_nodes():
    graph = parse("8x8x4|[res[3x3x4x4(p=1)|BN]|ReLU]*3")
    assert [node.name for node in graph.nodes if node.op.op_type == "Add"] == ["add1", "add2", "add3"]
    assert len(graph.nodes) == 3 * 4
    assert graph.node("conv3").block == "res3/main"


def test_repeat_counts_multiply():
    assert len(parse("4x4x1|ReLU*2*3").nodes) == 6


def test_repeat_of_one_is_allowed_for_any_item():
    assert out("8x8x3|3x3x3x4*1") == "6x6x4"


def test_node_names_are_unique_and_readable():
    graph = parse("8x8x3|3x3x3x4(p=1)|BN|ReLU|ReLU6|ReLU6|3x3x4x4(p=1)|MP|FC(10)|ReLU")
    assert [node.name for node in graph.nodes] == [
        "conv1", "bn1", "relu1", "relu6_1", "relu6_2", "conv2", "mp1", "flatten1", "fc1", "relu2"]


def test_labels_and_positions_point_into_the_text():
    text = "8x8x3 | 3x3x3x4( p=1 ) | relu"
    graph = parse(text)
    conv, relu = graph.nodes
    assert (conv.label, conv.pos) == ("3x3x3x4( p=1 )", text.index("3x3x3x4"))
    assert (relu.label, relu.pos) == ("relu", text.index("relu"))


def test_implicit_flatten_before_fc_on_an_image_only():
    graph = parse("4x4x2|FC(3)|FC(2)")
    flatten, fc1, fc2 = graph.nodes
    assert flatten.op.op_type == "Flatten" and flatten.implicit and not fc1.implicit
    assert fc1.inputs == ("flatten1",) and fc2.inputs == ("fc1",)
    assert fc1.op.in_features == 4 * 4 * 2


def test_input_shape_argument_makes_a_leading_shape_a_checkpoint():
    assert out("3x3x32x64(p=1,s=2)|112x112x64", input_shape="224x224x32") == "112x112x64"
    assert out("224x224x32|MP", input_shape=(32, 224, 224)) == "112x112x32"
    error = fails("224x224x3|MP", input_shape=(32, 224, 224))
    assert "checkpoint 224x224x3 does not hold" in error.message and "(the input)" in error.message


def test_defaults_bias_false_reaches_conv_and_fc_unless_overridden():
    graph = parse("4x4x2|3x3x2x2(p=1)|3x3x2x2(p=1,b=1)|FC(3)|FC(2,b=1)", defaults={"bias": False})
    conv1, conv2, _flatten, fc1, fc2 = (node.op for node in graph.nodes)
    assert (conv1.bias, conv2.bias, fc1.bias, fc2.bias) == (False, True, False, True)


def test_graph_metadata():
    graph = parse("4x4x2|ReLU", name="tiny", dtype="float16", batch=8)
    assert (graph.name, graph.dtype, graph.batch, graph.text) == ("tiny", "float16", 8, "4x4x2|ReLU")


def test_blocks_are_items_with_their_own_paths():
    blocks = {"unit": "3x3x4x4(p=1)|ReLU", "Pair": "unit|unit"}
    text = "8x8x4|pair|UNIT"
    graph = parse(text, blocks=blocks)
    assert [node.block for node in graph.nodes] == ["Pair/unit", "Pair/unit", "Pair/unit#2", "Pair/unit#2",
                                                    "unit#3", "unit#3"]
    # layers from a block carry their block text as label and the offset of the block's use
    assert graph.nodes[0].label == "3x3x4x4(p=1)" and graph.nodes[0].pos == text.index("pair")
    assert graph.nodes[-1].pos == text.index("UNIT")


def test_parse_shape():
    assert parse_shape("224x224x3") == (3, 224, 224)
    with pytest.raises(SpecError):
        parse_shape("3x3x3x3")


# ---- errors: where the caret goes and what the message says ---------------------------------------
# (text, part of the message, token the caret underlines (its first occurrence from the first '|' on)
#  or the caret's offset, part of the hint)
CARET_CASES = [
    ("", "the spec is empty", None, "224x224x3"),
    ("224x224x3|", "nothing after the last '|'", "|", "trailing"),
    ("|224x224x3", "empty item before '|'", "|", "leading"),
    ("224x224x3||ReLU", "empty item between '|' and '|'", "|", "extra '|'"),
    ("224x224x3|[ReLU", "unclosed '['", "[", "']'"),
    ("224x224x3|[ReLU|", "unclosed '['", "[", "']'"),
    ("224x224x3|ReLU]", "unmatched ']'", "]", None),
    ("224x224x3|[]", "empty brackets", "[", None),
    ("224x224x3|res[ReLU;]", "empty branch after ';'", ";", None),
    ("224x224x3|MP(3", "unclosed '('", "(", "')'"),
    ("224x224x3|ReLU)", "unmatched ')'", ")", None),
    ("224x224x3|ReLU*0", "repeats the item zero times", "0", None),
    ("224x224x3|ReLU*", "'*' needs a repeat count", "*", "item*3"),
    ("224x224x3|*2", "'*' must follow an item", "*", None),
    ("224x224x3|ReLU*20000", "above the limit of 10,000", "20000", None),
    ("224x224x3|ReLU;ReLU", "';' separates branches only inside", ";", None),
    ("224x224x3|[ReLU;ReLU]", "holds one chain", ";", "cat[a ; b]"),
    ("224x224x3|res", "res needs its branches in brackets", "res", "res[main]"),
    ("224x224x3|res[ReLU;ReLU;ReLU]", "at most two branches", ";ReLU]", None),
    ("224x224x3|cat[ReLU]", "at least two branches", "cat", None),
    ("224x224x3|ReLU&", "unexpected character '&'", "&", None),
    ("224x224x3 ReLU", "expected '|' between items", "ReLU", None),
    ("224x224x3|3x3", "'3x3' has 2 sizes", "3x3", "KhxKwxCinxCout"),
    ("224x224x3|7", "'7' has 1 size", "7", "item*3"),
    ("224x224x3|3x3x3x8x", "a size is missing", 17, None),
    ("224x224x3|112x112x3(p=1)", "a shape HxWxC takes no options", "(p=1)", None),
    ("224x224x3|(3)", "options must follow an operator name", "(3)", None),
    ("224x224x3|[ReLU](2)", "options must follow", "(2)", None),
    ("224x224x3|MP(3,)", "empty option", ")", None),
    ("224x224x3|MP(k=2,K=3)", "option K is given twice", "K=", None),
    ("224x224x3|MP(=2)", "no name before '='", "=2", None),
    ("224x224x3|MP(s=)", "option s= has no value", "=)", None),
    ("224x224x3|MP(s=2=3)", "two '='", "=3", None),
    ("0x224x3|ReLU", "a size of 0", 0, None),
    ("2000000x2x3|ReLU", "above the limit of 1,000,000", 0, None),
    ("224x224x3|1234567890x3x3x3", "far too large", "1234567890", None),
    ("ReLU|224x224x3", "a spec starts with its input shape", 0, "224x224x3"),
    ("224x224x3|rleu", "unknown name 'rleu'", "rleu", "did you mean ReLU?"),
    ("224x224x3|maxpol", "unknown name 'maxpol'", "maxpol", "did you mean MaxPool?"),
    ("224x224x3|Conv", "Conv is written with its sizes", "Conv", "KhxKwxCinxCout"),
    ("224x224x3|Add", "Add joins branches", "Add", "res[main ; shortcut]"),
    ("224x224x3|MP(q=1)", "MP has no option 'q=1'", "1", "MP takes"),
    ("224x224x3|FC", "FC needs its number of outputs", "FC", "FC(10)"),
    ("224x224x3|DO(2)", "item 2: option p=2 must lie in", "2)", None),
    ("224x224x3|3x3x3x8(s=x)", "item 2: option s='x' is not a whole number", "x)", None),
]


@pytest.mark.parametrize(("text", "message", "token", "hint"), CARET_CASES, ids=[c[0] or "empty" for c in CARET_CASES])
def test_error_messages_and_caret_positions(text, message, token, hint):
    error = fails(text)
    assert message in error.message
    if token is None:
        assert error.pos in (None, 0)
    else:
        start = token if isinstance(token, int) else text.find(token, max(0, text.find("|")))
        assert error.pos == start, (error.pos, start, error.render())
    if hint is not None:
        assert error.hint is not None and hint in error.hint
    assert "^" in error.render() or not text


def test_cin_mismatch_says_where_the_incoming_channels_come_from():
    text = "224x224x3|3x3x3x32(p=1)|3x3x32x64(p=1)|ReLU|3x3x32x64(p=1)"
    error = fails(text)
    assert error.message.startswith("item 5: ")
    assert "expects Cin=32" in error.message and "has 64 channels" in error.message
    assert "the incoming 64 channels come from item 3, 3x3x32x64(p=1)" in error.message
    assert error.hint == "write 3x3x64x64"
    assert (error.pos, error.length) == (text.rindex("3x3x32x64(p=1)"), len("3x3x32x64(p=1)"))


def test_cin_mismatch_against_the_input():
    error = fails("224x224x3|3x3x4x8")
    assert "the incoming 3 channels come from the input 224x224x3" in error.message


def test_checkpoint_that_fails_on_channels_names_the_layer_that_set_them():
    error = fails("8x8x3|3x3x3x16(p=1)|ReLU|8x8x32")
    assert "the tensor here is 8x8x16" in error.message and "item 2, 3x3x3x16(p=1), gives 8x8x16" in error.message
    assert error.hint == "if 8x8x16 is what you meant, write 8x8x16 here"


def test_checkpoint_hint_from_a_pool():
    # MP with k=2 on 7x7 gives 3x3; ceil is not among the variations, but p=1 gives (7 + 2 - 2) // 2 + 1 = 4
    error = fails("7x7x3|MP|ReLU|4x4x3")
    assert "item 2, MP, gives 3x3x3" in error.message
    assert error.hint == "p=1 makes it hold: write MP(p=1)"


def test_item_numbers_inside_groups_and_branches():
    assert fails("8x8x3|[ReLU|[3x3x4x8]]").message.startswith("item 2.2.1: ")
    assert fails("8x8x3|res[ReLU|3x3x4x3]").message.startswith("item 2 of res1/main: ")


def test_res_shape_mismatch_shows_both_branches():
    text = "56x56x64|res[3x3x64x128(p=1,s=2)|BN]"
    error = fails(text)
    assert "main gives 28x28x128, shortcut gives 56x56x64" in error.message
    assert (error.pos, error.length) == (text.index("res"), len(text) - text.index("res"))
    assert "projection" in error.hint


def test_cat_spatial_mismatch_is_an_error():
    error = fails("8x8x4|cat[MP;ReLU]")
    assert "branch 1 gives 4x4x4, branch 2 gives 8x8x4" in error.message


def test_groups_that_do_not_divide_the_channels():
    assert "groups g=4 must divide Cin=6" in fails("8x8x6|3x3x6x8(g=4)").message


def test_spatial_size_reaching_zero():
    text = "4x4x3|MP|MP|MP"
    error = fails(text)
    assert error.message.startswith("item 4: ") and "larger than its padded input 1x1" in error.message
    assert error.pos == text.rindex("MP")


def test_kernel_larger_than_input():
    assert "conv kernel 5x5 is larger than its padded input 3x3" in fails("3x3x1|5x5x1x1").message


def test_repeat_of_an_item_that_changes_shape():
    text = "224x224x3|3x3x3x8*2"
    error = fails(text)
    assert "turns 224x224x3 into 222x222x8, so it cannot be repeated 2 times" in error.message
    assert (error.pos, error.length) == (text.index("*"), 2)


def test_layer_cap():
    error = fails("4x4x1|[ReLU*100]*200")  # 20,000 layers
    assert f"more than {MAX_LAYERS:,} layers" in error.message


def test_expanded_item_cap_counts_checkpoints():
    assert "more than 100,000 items" in fails("4x4x1|[4x4x1*1000]*1000").message


def test_output_beyond_the_size_limit():
    # (1000 + 2) * (1000 + 2) * 1,000,000 elements is above 10^12
    assert "beyond cnncalc's limits" in fails("1000x1000x3|1x1x3x1000000(p=1)").message
    # a height of 1,000,000 + 2 is above 1,000,000
    assert "beyond cnncalc's limits" in fails("1000000x1x1|1x1x1x1(p=1)").message


def test_nesting_limit():
    text = "4x4x1|" + "[" * 60 + "ReLU" + "]" * 60
    assert "nested deeper than 50" in fails(text).message


def test_block_errors_point_into_the_block_and_say_where_it_is_used():
    blocks = {"down": "3x3x4x8(s=2,p=1)", "keep": "3x3x4x4(p=1)"}
    error = fails("8x8x4|down|keep", blocks=blocks, source="net.yaml: network")
    assert error.source == "net.yaml: blocks.keep"
    assert error.text == "3x3x4x4(p=1)" and error.pos == 0
    assert "(in block keep, used at item 3)" in error.message
    assert "the incoming 8 channels come from item 1 of down, 3x3x4x8(s=2,p=1)" in error.message
    assert error.render().startswith("net.yaml: blocks.keep: item 1 of keep: ")


def test_block_misuse():
    blocks = {"loop": "ReLU|loop", "unit": "ReLU"}
    assert "uses itself" in fails("4x4x1|loop", blocks=blocks).message
    error = fails("4x4x1|unit(2)", blocks={"unit": "ReLU"})
    assert "block unit takes no options" in error.message and error.pos == len("4x4x1|unit")
    assert "already an operator" in fails("4x4x1|ReLU", blocks={"relu": "ID"}).message
    assert "not a name" in fails("4x4x1|ReLU", blocks={"two words": "ID"}).message
    syntax = fails("4x4x1|ReLU", blocks={"bad": "ReLU|"}, source="f.yaml: network")
    assert syntax.source == "f.yaml: blocks.bad" and "nothing after the last '|'" in syntax.message


def test_unknown_block_suggests_the_block():
    assert fails("4x4x1|basci", blocks={"basic": "ReLU"}).hint == "did you mean basic?"


def test_bad_metadata():
    with pytest.raises(CnnCalcError, match="unknown dtype"):
        parse("4x4x1|ReLU", dtype="float8")
    with pytest.raises(CnnCalcError, match="batch"):
        parse("4x4x1|ReLU", batch=0)
    with pytest.raises(SpecError, match="input shape"):
        parse("ReLU", input_shape=(1, 0, 4))
    with pytest.raises(SpecError, match="a spec is text"):
        parse(None)  # type: ignore[arg-type]


def test_source_is_shown_first():
    error = fails("4x4x1|rleu", source="net.yaml: variants.fast")
    assert error.render().startswith("net.yaml: variants.fast: item 2: unknown name 'rleu'")


def test_multiline_text_shows_the_line_of_the_error():
    text = "4x4x1 |\nReLU |\nrleu"
    rendered = fails(text).render().splitlines()
    assert rendered[1:3] == ["  rleu", "  ^^^^"]


# ---- option values, limits, and what a failed checkpoint says about the input ----------------------
def test_clip_needs_min_below_max():
    cases = [
        # min=7 against the default max=6: the caret goes under the only bound written
        ("224x224x3|ReLU6(min=7)", "7", "max is 6 unless given"),
        # equal bounds would make the layer a constant: also refused, caret under max
        ("4x4x1|Clip(min=3,max=3)", "3)", "write a min below 3"),
        ("4x4x1|Clip(max=-1)", "-1", "write a min below -1"),
        ("4x4x1|Clip(min=inf)", "inf", "no bound"),
    ]
    for text, value, hint in cases:
        error = fails(text)
        assert "must be below max" in error.message and error.message.startswith("item 2: "), text
        assert error.pos == text.rindex(value) and hint in error.hint, error.render()
    ordered = parse("4x4x1|Clip(min=-1,max=1)|Clip(min=-inf,max=inf)").nodes
    assert [node.op.describe() for node in ordered] == ["Clip(min=-1,max=1)", "Clip(min=-inf,max=inf)"]


def test_on_off_options_take_only_0_or_1():
    cases = [
        ("224x224x3|3x3x3x8(b=2)", "2"),
        ("224x224x3|3x3x3x8(bias=-1)", "-1"),
        ("224x224x3|FC(10,b=5)", "5"),
        ("224x224x3|MP(ceil=2)", "2"),
        ("224x224x3|LP(ceil_mode=true)", "true"),
        ("224x224x3|AP(cip=2)", "2"),
    ]
    for text, value in cases:
        error = fails(text)
        assert "must be 0 or 1" in error.message, text
        # the caret is under the value, not the operator's name
        assert (error.pos, error.length) == (text.rindex(value), len(value)), error.render()
        assert "=0" in error.hint and "=1" in error.hint
    graph = parse("8x8x2|3x3x2x2(p=1,b=0)|3x3x2x2(p=1,b=1)|AP(ceil=1,cip=1)|MP(ceil=0)|FC(3,b=0)")
    conv1, conv2, ap, mp, fc = (node.op for node in graph.nodes if node.op.op_type != "Flatten")
    assert (conv1.bias, conv2.bias, ap.ceil_mode, ap.count_include_pad, mp.ceil_mode, fc.bias) == (
        False, True, 1, 1, 0, False)


def test_defaults_bias_must_be_true_or_false():
    with pytest.raises(CnnCalcError, match="must be true or false"):
        parse("4x4x1|3x3x1x1", defaults={"bias": 2})


def test_checkpoint_says_the_input_only_of_the_input():
    cases = [
        # cat of two 8x8 convs (p=1 keeps 8x8) gives 8x8x8: its 8x8 is the input's, its 8 channels the Concat's
        ("8x8x3|cat[3x3x3x4(p=1);3x3x3x4(p=1)]|4x4x8",
         "the tensor here is 8x8x8; the layers since the input 8x8x3 keep its 8x8"),
        # a 3-to-3 conv inside res keeps the input's 3 channels
        ("8x8x3|res[3x3x3x3(p=1)|8x8x4]",
         "the tensor here is 8x8x3; the layers since the input 8x8x3 keep its 3 channels"),
        ("8x8x3|ReLU|4x4x3", "the tensor here is 8x8x3; the layers since the input 8x8x3 keep its 8x8"),
    ]
    for text, kept in cases:
        message = fails(text).message
        assert kept in message and "(the input)" not in message, message
    # a checkpoint on the input itself, also at the start of a branch
    assert fails("8x8x3|8x8x4").message.endswith("the tensor here is 8x8x3 (the input)")
    assert fails("8x8x3|res[8x8x4]").message.endswith("the tensor here is 8x8x3 (the input)")


@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ("res[", "]"), ("cat[ReLU;", "]")])
def test_brackets_nest_50_deep_and_no_deeper(opener, closer):
    assert len(parse("4x4x1|" + opener * 50 + "ReLU" + closer * 50).nodes) >= 1
    text = "4x4x1|" + opener * 51 + "ReLU" + closer * 51
    error = fails(text)
    assert "brackets are nested deeper than 50 levels" in error.message
    # the caret is under the 51st '['
    assert error.pos == len("4x4x1|") + 50 * len(opener) + opener.index("["), error.pos


def test_documented_nesting_limits_fit_in_python_recursion():
    # the spec and 16 blocks used inside each other, each text 50 brackets deep: 850 levels of groups
    depth = 50
    blocks = {f"b{i}": "[" * depth + f"b{i + 1}" + "]" * depth for i in range(15)}
    blocks["b15"] = "[" * depth + "3x3x1x1(p=1)" + "]" * depth
    graph = parse("4x4x1|" + "[" * depth + "b0" + "]" * depth, blocks=blocks)
    assert [node.name for node in graph.nodes] == ["conv1"]


def test_input_obeys_the_element_limit():
    # 1,000,000 * 1,000,000 * 2 = 2 * 10^12 elements, above 10^12; with 1 channel it is exactly 10^12
    text = "1000000x1000000x2"
    error = fails(text)
    assert "the input 1000000x1000000x2 has 2,000,000,000,000 elements" in error.message
    assert (error.pos, error.length) == (0, len(text))
    assert out("1000000x1000000x1") == "1000000x1000000x1"
    for shape in ("1000000x1000000x2", (2, 1_000_000, 1_000_000)):
        assert "above the limit of 1,000,000,000,000" in fails("ReLU", input_shape=shape).message
    with pytest.raises(SpecError, match="2,000,000,000,000 elements"):
        parse_shape(text)


def test_float_options_survive_the_spec_text_exactly():
    # `:g` kept 6 significant digits: LReLU(a=0.123456789) came back as a=0.123457
    text = "8x8x3|LReLU(a=0.123456789)|Clip(min=-0.1234567,max=0.765432)|DO(0.1)|BN(eps=0.0012345678)"
    graph = parse(text)
    again = parse("8x8x3|" + "|".join(node.op.describe() for node in graph.nodes))
    assert [node.op for node in again.nodes] == [node.op for node in graph.nodes]
    assert graph.nodes[0].op.describe() == "LReLU(a=0.123456789)"


# ---- the caret stays under its token as a terminal shows the line ----------------------------------
def test_caret_after_tabs_copies_the_tabs():
    text = "224x224x3|\tReLU|\tfoo"
    shown, carets = fails(text).render().splitlines()[1:3]
    # a terminal moves both lines to the same tab stops only if the caret line has the tabs too:
    # '224x224x3|' is 10 spaces, the tab stays a tab, 'ReLU|' is 5 spaces, a tab, then 3 carets for 'foo'
    assert shown == "  " + text
    assert carets == "  " + " " * 10 + "\t" + " " * 5 + "\t" + "^^^"


def test_caret_after_wide_characters_counts_two_columns_each():
    # a full-width character takes two terminal columns: the caret moves one extra space for it
    error = SpecError("unknown name", "ab\uff10|foo", 4, length=3)
    shown, carets = error.render().splitlines()[1:3]
    assert shown == "  ab\uff10|foo"
    assert carets == "  " + " " * (2 + 2 + 1) + "^^^"  # 'ab' 2, the wide char 2, '|' 1


def test_a_very_long_line_is_cut_to_a_window_around_the_caret():
    text = "8x8x3|" + "|".join(["ReLU"] * 3000) + "|rleu|" + "|".join(["ReLU"] * 3000)
    error = fails(text)
    shown, carets = error.render().splitlines()[1:3]
    # 30,000 characters would wrap over hundreds of screen lines: at most 100 columns and the two
    # '...' marks are shown, with the caret still under 'rleu'
    assert len(shown) <= 2 + 3 + 100 + 3
    assert shown.startswith("  ...") and shown.endswith("...")
    assert shown[carets.index("^"):carets.index("^") + 4] == "rleu"
    assert carets.strip() == "^^^^"


def test_a_short_line_is_shown_whole():
    text = "8x8x3|rleu|" + "|".join(["ReLU"] * 10)
    assert fails(text).render().splitlines()[1] == "  " + text


# ---- characters pasted from documents ---------------------------------------------------------------
@pytest.mark.parametrize(("text", "char", "fixed"), [
    # the multiplication sign in sizes is an 'x' ...
    ("224\u00d7224\u00d73|ReLU", "\u00d7", "224x224x3|ReLU"),
    # ... and after an item, a repeat '*'
    ("224x224x3|ReLU\u00d73", "\u00d7", "224x224x3|ReLU*3"),
    # a minus sign where Clip takes -1
    ("224x224x3|Clip(min=\u22121)", "\u2212", "224x224x3|Clip(min=-1)"),
    # full-width digits: Python's float() reads '\uff10.\uff15' as 0.5, so DO(\uff10.\uff15) used to be accepted
    ("224x224x3|DO(\uff10.\uff15)", "\uff10", "224x224x3|DO(0.5)"),
    # in sizes they used to give "a size is missing after '3x3x3x'" with the caret under the 'x'
    ("224x224x3|3x3x3x\uff18", "\uff18", "224x224x3|3x3x3x8"),
    ("224x224x3\uff5cReLU", "\uff5c", "224x224x3|ReLU"),
    ("224x224x3|MP\uff083\uff09", "\uff08", "224x224x3|MP(3)"),
])
def test_a_unicode_lookalike_is_named_and_the_ascii_fix_given(text, char, fixed):
    error = fails(text)
    assert error.message.startswith(f"unexpected character {char!r} (U+{ord(char):04X} ")
    assert error.pos == text.index(char)
    assert error.hint == f"type the ASCII {fixed[text.index(char)]!r} instead: {fixed}"
    assert out(fixed)  # the suggested text parses


def test_an_invisible_character_says_so():
    error = fails("224x224x3|Re\u200bLU")
    assert "U+200B ZERO WIDTH SPACE" in error.message
    assert error.pos == len("224x224x3|Re") and "invisible" in error.hint


def test_unicode_whitespace_is_whitespace():
    # a no-break space or an ideographic space between tokens is ignored like any whitespace
    assert out("224x224x3\u00a0|\u3000ReLU") == "224x224x3"


def test_a_failing_checkpoint_that_reads_as_a_conv_without_cout_says_so():
    # '3x3x3' after a 3-channel input is a 3x3 conv on 3 channels whose Cout was left out; parsed as a
    # checkpoint it fails, and the hint used to offer only "write 224x224x3 here"
    error = fails("224x224x3|3x3x3")
    assert error.hint.startswith("a convolution has four sizes KhxKwxCinxCout, e.g. 3x3x3x6; ")
    assert error.hint.endswith("if 224x224x3 is what you meant, write 224x224x3 here")
    # a checkpoint that only misses the spatial size of a big tensor is not taken for a conv
    assert not fails("224x224x3|3x3x3x16|112x112x16").hint.startswith("a convolution")


@pytest.mark.parametrize(("text", "value"), [("8x8x3|LReLU(inf)", "inf"), ("8x8x3|BN(eps=inf)", "inf"),
                                             ("8x8x3|LReLU(a=1e999)", "1e999")])
def test_an_infinite_slope_or_epsilon_is_refused(text, value):
    # x * inf is -inf for every negative input, and a BN dividing by sqrt(var + inf) outputs its bias alone:
    # both were accepted; Clip's bounds (below) are where inf means something: no bound on that side
    error = fails(text)
    assert "must be a finite number" in error.message
    assert (error.pos, error.length) == (text.rindex(value), len(value))
    assert out("8x8x3|Clip(min=-inf,max=inf)") == "8x8x3"
