"""Each advice rule: a spec that triggers it, one that does not, and its numbers against hand arithmetic."""

from __future__ import annotations

import pytest

from cnncalc.advice import advise, checkpoint_advice, refresh
from cnncalc.analysis import analyze
from cnncalc.errors import SpecError
from cnncalc.hardware import Profile, get_profiles
from cnncalc.spec import parse

MIB = 2**20


def device(name: str = "toy", flops: float = 1e15, bandwidth: float = 1e9, usable: int = 2**30) -> Profile:
    """A device with round numbers: no launch overhead, every efficiency 1."""
    return Profile(name=name, description="", peak_flops_per_s={"float32": flops}, mem_bytes_per_s=bandwidth,
                   mem_bytes=usable, usable_mem_bytes=usable, launch_overhead_s=0.0, efficiency={}, sources={})


#: everything waits on memory: 1e15 FLOP/s against 1e9 B/s
MEMORY_BOUND = device("slow-memory")
#: everything waits on compute: 1e9 FLOP/s against 1e15 B/s
COMPUTE_BOUND = device("slow-compute", flops=1e9, bandwidth=1e15)


def codes(text: str, *, profiles: tuple[Profile, ...] = (), batch: int | None = None,
          object_size: int | None = None) -> dict[str, list]:
    report = analyze(parse(text), batch=batch, profiles=profiles)
    found: dict[str, list] = {}
    for item in advise(report, object_size, profiles):
        found.setdefault(item.code, []).append(item)
    return found


# ---- receptive field against the input ------------------------------------------------
def test_receptive_field_short_of_the_input():
    found = codes("32x32x3|3x3x3x8(p=1)|3x3x8x8(p=1)|3x3x8x8(p=1)")["receptive-field"]
    item = found[0]
    # three 3x3 convs at stride 1: r = 1 + 2 + 2 + 2 = 7; 7 / 32 = 21.875% -> "22%"
    assert (item.numbers["field_h"], item.numbers["jump"]) == (7, 1)
    assert "covers 22% of the 32x32 input" in item.message
    # missing 32 - 7 = 25 px; each 3x3 adds 2 * 1 -> ceil(25 / 2) = 13 more convs, adding 26 px
    assert item.numbers["convs_needed"] == 13
    assert "13 more 3x3 conv(s)" in item.hint and "26 px" in item.hint


def test_receptive_field_covering_the_input_is_quiet():
    # the same three convs on a 7x7 input: r = 7 covers it
    assert "receptive-field" not in codes("7x7x3|3x3x3x8(p=1)|3x3x8x8(p=1)|3x3x8x8(p=1)")


def test_fragment_from_a_feature_map_gets_no_receptive_field_warning():
    # the notes' fragment starts from a 32-channel tensor: its 3x3 field is not in pixels of any image
    assert "receptive-field" not in codes("224x224x32|3x3x32x64(p=1)|224x224x64|MP|112x112x64")
    # the same layers from a 4-channel (RGBA) image do get it: the field is 4x4 of 224x224
    assert "receptive-field" in codes("224x224x4|3x3x4x64(p=1)|MP")


# ---- --object-size ----------------------------------------------------------------------------
VGG_LIKE = "64x64x3|3x3x3x8(p=1)|3x3x8x8(p=1)|MP|3x3x8x8(p=1)|3x3x8x8(p=1)|MP"


def test_object_size_names_the_first_layer_that_covers_it():
    item = codes(VGG_LIKE, object_size=12)["object-size"][0]
    # fields: conv 3, conv 5, MP 5+1 = 6 (j 2), conv 6+2*2 = 10, conv 14 >= 12: the 5th layer
    assert (item.layer, item.numbers["depth"], item.numbers["field"]) == ("conv4", 5, 14)
    assert "first covers a 12 px object at conv4" in item.message
    assert "# 4 in the table, layer 5 of 6" in item.message  # the table counts from 0


def test_object_size_never_reached():
    item = codes(VGG_LIKE, object_size=40)["object-size"][0]
    # final field 16 (MP: 14 + 1*2), jump 4: 40 - 16 = 24 px missing, each 3x3 adds 2*4 = 8 -> 3 convs, 16 + 24 = 40
    assert item.level == "warning"
    assert (item.numbers["field"], item.numbers["jump"], item.numbers["convs_needed"]) == (16, 4, 3)
    assert "reach 40 px" in item.hint


def test_no_object_size_no_object_advice():
    assert "object-size" not in codes(VGG_LIKE)


# ---- 1x1 bottlenecks --------------------------------------------------------------------------
def test_bottleneck_numbers_are_the_notes_example():
    item = codes("28x28x256|3x3x256x512(p=1)")["bottleneck"][0]
    # the notes: 3x3x256x512 against 1x1x256x32 | 3x3x32x32 | 1x1x32x512 (width 256 / 8 = 32)
    assert "1x1x256x32 | 3x3x32x32 | 1x1x32x512" in item.hint
    # the width 32 is the notes' 256 / 8, not ResNet's: its bottleneck blocks run 256 -> 64 -> 64 -> 256 (/ 4)
    assert "the notes' width, min(Cin, Cout) / 8; ResNet's blocks use / 4" in item.hint
    # weights: 3*3*256*512 = 1,179,648 against 256*32 + 9*32*32 + 32*512 = 8,192 + 9,216 + 16,384 = 33,792
    assert (item.numbers["weights"], item.numbers["alt_weights"]) == (1_179_648, 33_792)
    # MACs at 28x28 (p=1 keeps the size): 784 * 1,179,648 = 924,844,032;
    # alternative 784 * 8,192 + 784 * (9,216 + 16,384) = 6,422,528 + 20,070,400 = 26,492,928
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (924_844_032, 26_492_928)
    assert "924,844,032 MACs" in item.message and "26,492,928 MACs" in item.hint
    # saving 1 - 26,492,928 / 924,844,032 = 97.1%
    assert "97% fewer MACs" in item.hint


@pytest.mark.parametrize("text", [
    "28x28x64|3x3x64x128(p=1)",  # too few channels
    "28x28x256|1x1x256x512",  # already pointwise
    "28x28x256|3x3x256x256(p=1,dw)",  # depthwise: no channel mixing to cut
    "28x28x512|1x1x512x256|ReLU|3x3x256x256(p=1)",  # already the middle of a bottleneck
])
def test_no_bottleneck_hint(text):
    assert "bottleneck" not in codes(text)


# ---- stride versus pool -------------------------------------------------------------------------
POOLED = "32x32x8|3x3x8x8(p=1)|ReLU|MP"
STRIDED = "32x32x8|3x3x8x8(p=1,s=2)|ReLU"


def test_stride_for_pool_on_a_memory_bound_device():
    item = codes(POOLED, profiles=(MEMORY_BOUND,))["stride-for-pool"][0]
    assert item.numbers["alternative"] == "3x3x8x8(p=1,s=2)"
    # MACs: 32*32*8 outputs * 72 = 589,824; strided 16*16*8 * 72 = 147,456
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (589_824, 147_456)
    # peak (float32): input 32*32*8*4 = 32,768 + conv out 32,768 = 65,536;
    # strided: input 32,768 + conv out 16*16*8*4 = 8,192 -> 40,960
    assert (item.numbers["peak_bytes"], item.numbers["alt_peak_bytes"]) == (65_536, 40_960)
    # time at 1e9 B/s (memory-bound, no overhead): conv moves 32,768 + 32,768 + weights (576 + 8) * 4 = 2,336
    # -> 67,872 B; ReLU 65,536 B; MP 32,768 + 8,192 = 40,960 B: 174,368 B = 174.368 us.
    # strided: conv 32,768 + 8,192 + 2,336 = 43,296 B; ReLU 16,384 B: 59,680 B = 59.68 us
    assert item.numbers["latency_s"]["slow-memory"] == pytest.approx(174.368e-6)
    assert item.numbers["alt_latency_s"]["slow-memory"] == pytest.approx(59.68e-6)
    assert "keep 25% of it" in item.message  # 16*16 of 32*32


@pytest.mark.parametrize(("spec", "field"), [
    # one 3x3 conv then GAP: each pooled feature sees 3x3 pixels (1 + 2), though GAP's own field is the image
    ("32x32x3|3x3x3x8(p=1)|GAP|FC(10)", 3),
    # MP(4) after it: 3 + (4 - 1) * 1 = 6 on an 8x8 map; AP(8) covers that whole map, so it is a global
    # pool too, and the field is judged before it
    ("32x32x3|3x3x3x8(p=1)|MP(4)|AP(8)|Flatten|FC(10)", 6),
])
def test_receptive_field_is_judged_before_a_global_pool(spec, field):
    (item,) = codes(spec)["receptive-field"]
    assert (item.numbers["field_h"], item.numbers["field_w"]) == (field, field)
    assert "before " in item.message


def test_flatten_and_fc_see_the_whole_image():
    # an FC on flattened features knows where each came from: no receptive-field warning
    assert "receptive-field" not in codes("32x32x3|3x3x3x8(p=1)|Flatten|FC(10)")


def test_stride_for_pool_when_the_batch_does_not_fit():
    # compute-bound, but 1 MiB holds only floor((1,048,576 - 2,336) / 65,536) = 15 samples: batch 16 does not fit
    small = device("small", flops=1e9, bandwidth=1e15, usable=MIB)
    item = codes(POOLED, profiles=(small,), batch=16)["stride-for-pool"][0]
    assert "batch 16 does not fit on small (max 15 for inference" in item.message


def test_stride_for_pool_names_training_when_only_training_does_not_fit():
    # 1 MiB; inference keeps at most input + conv out = 65,536 B per sample: floor(1,046,240 / 65,536) = 15;
    # training keeps input, conv, ReLU and MP outputs: 32,768 * 3 + 8,192 = 106,496 B per sample and
    # weights + grads + momentum 3 * 2,336 = 7,008: floor((1,048,576 - 7,008) / 106,496) = 9.
    # At batch 12 inference fits and training does not: the message said "batch 12 does not fit"
    small = device("small", flops=1e9, bandwidth=1e15, usable=MIB)
    item = codes(POOLED, profiles=(small,), batch=12)["stride-for-pool"][0]
    assert "training at batch 12 does not fit on small (max 9; inference fits up to 15)" in item.message


def test_no_stride_advice_where_compute_is_the_limit_or_without_profiles():
    assert "stride-for-pool" not in codes(POOLED, profiles=(COMPUTE_BOUND,))
    assert "stride-for-pool" not in codes(POOLED)


def test_pool_for_stride_where_the_device_has_room():
    item = codes(STRIDED, profiles=(COMPUTE_BOUND,))["pool-for-stride"][0]
    # the chain that was costed: the pool goes after the ReLU (the hint said "conv | MP")
    assert item.numbers["alternative"] == "3x3x8x8(p=1) | ReLU | MP"
    # the reverse of the case above: 147,456 MACs -> 589,824
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (147_456, 589_824)
    # compute-bound at 1e9 FLOP/s: FLOPs = 2 * MACs + bias adds + ReLU (1 per element) [+ MP 3 per output]
    # strided: 294,912 + 2,048 + 2,048 = 299,008 -> 299.008 us
    # stride 1: 1,179,648 + 8,192 + 8,192 + 3 * 2,048 = 1,202,176 -> 1,202.176 us
    assert item.numbers["latency_s"]["slow-compute"] == pytest.approx(299.008e-6)
    assert item.numbers["alt_latency_s"]["slow-compute"] == pytest.approx(1_202.176e-6)


def test_pool_for_stride_says_where_the_hardware_forces_the_stride():
    # the stride-1 conv needs 32,768 + 32,768 B of activations + 2,336 B weights = 67,872 B; 50,000 B do not hold it
    # (the strided one needs 32,768 + 8,192 + 2,336 = 43,296 B and fits): at most 0 for inference; training
    # keeps 32,768 * 3 + 8,192 = 106,496 B beside 3 * 2,336 = 7,008 B: at most 0 too. The notes' rule (stride
    # only under a hardware limit) then says to keep it; before, the advice said nothing on such a device
    tight = device("tight", flops=1e9, bandwidth=1e15, usable=50_000)
    forced = ("on tight the stride-1 version does not fit at batch 1 (at most 0 for inference, 0 for training): "
              "keep the stride there")
    (item,) = codes(STRIDED, profiles=(tight,))["pool-for-stride"]
    assert item.message.endswith("skips input positions, and the hardware forces it: " + forced)
    (item,) = codes(STRIDED, profiles=(COMPUTE_BOUND, tight))["pool-for-stride"]
    assert item.message.endswith("slow-compute has room for the stride-1 version; " + forced)
    assert "pool-for-stride" not in codes(POOLED, profiles=(COMPUTE_BOUND,))


def test_strided_conv_warning_without_profiles():
    item = codes(STRIDED)["strided-conv"][0]
    # stride 2: about 2*2 = 4x the MACs at stride 1: 147,456 -> 589,824
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (147_456, 589_824)
    assert "strided-conv" not in codes(POOLED)


def test_a_strided_depthwise_conv_counts_as_a_strided_conv():
    # MobileNetV2's four s=2 depthwise convs were left out; by hand: 16x16x8 out, 9 MACs each = 18,432
    item = codes("32x32x8|3x3x8x8(dw,p=1,s=2)|ReLU")["strided-conv"][0]
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (18_432, 73_728)
    assert "dw" in item.message


def test_no_strided_1x1_offered_for_a_1x1_then_pool():
    # a 1x1 at stride 2 reads one pixel in four: replacing 1x1 | MP with it throws 3/4 of the input away.
    # On the memory-bound device the 3x3 case gets stride-for-pool (test above); the 1x1 case must not.
    found = codes("32x32x8|1x1x8x8|ReLU|MP", profiles=(MEMORY_BOUND,))
    assert "stride-for-pool" not in found
    assert "pool-first" in found  # what it gets instead


def test_strided_1x1_hint_is_a_pool_before_it_at_the_same_macs():
    item = codes("32x32x8|1x1x8x8(s=2)|ReLU")["strided-conv"][0]
    # 16*16*8 = 2,048 outputs * 8 MACs = 16,384; MP(2) first gives 16x16x8 too, so the 1x1 does the same 16,384
    # (the old hint said "stride 1 then MP(2) at about 4x": 65,536, for what a pool in front does for free)
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (16_384, 16_384)
    assert "MP(2) | 1x1x8x8 sees every pixel at the same 16,384 MACs" in item.hint
    # and no pool-for-stride offering the 4x version
    assert "pool-for-stride" not in codes("32x32x8|1x1x8x8(s=2)|ReLU", profiles=(COMPUTE_BOUND,))


def test_strided_1x1_on_an_odd_size_names_the_pooled_shape():
    item = codes("7x7x8|1x1x8x8(s=2)")["strided-conv"][0]
    # 1x1 s=2 on 7: (7 - 1) // 2 + 1 = 4 -> 4*4*8 outputs * 8 = 1,024 MACs; MP(2) on 7: 3 -> 3*3*8 * 8 = 576
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (1_024, 576)
    assert "3x3 instead of 4x4" in item.hint


# ---- pool before 1x1 ------------------------------------------------------------------------------
def test_pool_first_for_a_1x1_then_max_pool():
    item = codes("56x56x256|1x1x256x128|ReLU|MP")["pool-first"][0]
    # 1x1 at 56x56: 3,136 * 128 * 256 = 102,760,448 MACs; after MP(2) first, at 28x28: 784 * 32,768 = 25,690,112
    assert (item.numbers["macs"], item.numbers["alt_macs"]) == (102_760_448, 25_690_112)
    assert item.numbers["saving_macs"] == 102_760_448 - 25_690_112  # 77,070,336
    assert item.numbers["alternative"] == "MP | 1x1x256x128 | ReLU"
    assert "25,690,112 MACs" in item.hint and "saves 75% of the network's MACs" in item.hint  # the 1x1 is all of it


@pytest.mark.parametrize("text", [
    "56x56x256|MP|1x1x256x128|ReLU",  # already pool first
    "56x56x256|3x3x256x128(p=1)|ReLU|MP",  # a 3x3 mixes neighbours: not the same layer after a pool
    "56x56x256|1x1x256x128|ReLU|MP(3,s=1,p=1)",  # the pool keeps the size: nothing to save
    "56x56x256|1x1x256x128|GAP",  # global pool: the GAP-then-FC question, fc-params' business
])
def test_no_pool_first(text):
    assert "pool-first" not in codes(text)


# ---- fully connected layers ----------------------------------------------------------------------
def test_fc_holding_most_params_and_the_gap_alternative():
    item = codes("8x8x3|3x3x3x16(p=1)|FC(10)")["fc-params"][0]
    # conv 3*3*3*16 + 16 = 448; FC on the flattened 8*8*16 = 1,024: 10,240 + 10 = 10,250; total 10,698
    assert (item.numbers["fc_params"], item.numbers["total_params"]) == (10_250, 10_698)
    assert "96% of the parameters" in item.message  # 10,250 / 10,698 = 95.8%
    # GAP first: 16 * 10 + 10 = 170, saving 10,250 - 170 = 10,080
    assert (item.numbers["gap_params"], item.numbers["saving"]) == (170, 10_080)
    assert "16 x 10 + 10 = 170 params" in item.hint


def test_fc_after_gap_is_not_flagged():
    # conv 448 params, FC 16 * 10 + 10 = 170: 28% of 618, below half
    assert "fc-params" not in codes("8x8x3|3x3x3x16(p=1)|GAP|FC(10)")


# ---- max-pool placement ------------------------------------------------------------------------
def test_adjacent_pools():
    item = codes("32x32x3|3x3x3x8(p=1)|MP|ReLU|MP|3x3x8x8(p=1)")["adjacent-pools"][0]
    # 2 * 2: one pool of stride 4 does the same downsampling
    assert item.numbers["merged_stride"] == 4
    assert "32x32x8 -> 16x16x8 -> 8x8x8" in item.message


def test_pool_right_before_the_classifier():
    item = codes("16x16x3|3x3x3x8(p=1)|MP|FC(10)")["pool-before-classifier"][0]
    # FC on the pooled 8x8x8 = 512 values: 5,120 + 10 = 5,130 params
    assert item.numbers["classifier_params"] == 5_130
    assert "8x8x8" in item.message and "max-pooling" in item.message
    average = codes("16x16x3|3x3x3x8(p=1)|AP|FC(10)")["pool-before-classifier"][0]
    assert "max-pooling" not in average.message and "a downsampling pool" in average.message  # LeNet-5's AP


def test_pool_before_classifier_hint_never_suggests_a_bigger_classifier():
    # the hint said "use GAP (or no pool) before FC": without the pool the FC reads 4x the values.
    item = codes("16x16x3|3x3x3x8(p=1)|MP|FC(10)")["pool-before-classifier"][0]
    # GAP instead of MP: 8 * 10 + 10 = 90 params; no pool at all: 16*16*8 = 2,048 * 10 + 10 = 20,490
    assert (item.numbers["gap_params"], item.numbers["unpooled_params"]) == (90, 20_490)
    assert "or no pool" not in item.hint
    assert "90 params instead of 5,130" in item.hint and "16x16x8 (20,490 params)" in item.hint

def test_well_placed_pools_are_quiet():
    found = codes("32x32x3|3x3x3x8(p=1)|MP|3x3x8x8(p=1)|MP|3x3x8x8(p=1)|GAP|FC(10)")
    assert "adjacent-pools" not in found and "pool-before-classifier" not in found


# ---- batch limits ------------------------------------------------------------------------------------
def test_largest_batch_and_what_limits_it():
    small = device("small", flops=1e9, bandwidth=1e15, usable=MIB)
    item = codes("32x32x8|3x3x8x8(p=1)", profiles=(small,))["batch"][0]
    # inference: weights (576 + 8) * 4 = 2,336 B; per sample input + conv out = 65,536 B
    # floor((1,048,576 - 2,336) / 65,536) = floor(15.96) = 15
    assert (item.numbers["max_batch_inference"], item.numbers["per_sample_bytes"]) == (15, 65_536)
    # training (SGD-momentum): weights + grads + momentum 3 * 2,336 = 7,008; kept per sample 65,536
    # floor((1,048,576 - 7,008) / 65,536) = floor(15.89) = 15
    assert (item.numbers["fixed_training_bytes"], item.numbers["max_batch_training"]) == (7_008, 15)
    assert item.level == "info" and "largest batch 15 for inference" in item.message
    assert item.hint is None  # the message says it all; a hint would repeat the batch sizes
    # 15 * 65,536 / 1,048,576 = 93.75% -> "94%"
    assert "activations fill 94%" in item.message


def test_memory_shares_do_not_round_to_0_or_100_percent():
    # the notes' strided design on titan-x-maxwell: 72.2 KiB of weights in 11.5 GiB is 0.0006%, and
    # 1,281 samples of 9.19 MiB fill 11.49 of the 11.5 GiB (99.9%): they read "weights 0%", "fill 100%"
    report = analyze(parse("224x224x32|3x3x32x64(p=1,s=2)"), profiles=get_profiles(["titan-x-maxwell"]))
    (item,) = [item for item in advise(report) if item.code == "batch"]
    assert "activations fill >99% of it, weights <1%" in item.message


def test_batch_that_does_not_fit_is_a_warning():
    small = device("small", flops=1e9, bandwidth=1e15, usable=MIB)
    item = codes("32x32x8|3x3x8x8(p=1)", profiles=(small,), batch=16)["batch"][0]
    assert item.level == "warning" and "inference at batch 16 does not fit" in item.hint


def test_batch_advice_offers_only_the_fixes_that_can_work():
    small = device("small", flops=1e9, bandwidth=1e15, usable=MIB)
    # batch 16 on 1 MiB: 15 fit (test_largest_batch_and_what_limits_it), so a smaller batch is the first fix
    item = codes("32x32x8|3x3x8x8(p=1)", profiles=(small,), batch=16)["batch"][0]
    assert "inference at batch 16 does not fit (at most 15)" in item.hint and "lower the batch" in item.hint
    # 32 KiB: the weights (2,336 B) fit, one sample's 65,536 B of activations do not; the message said
    # "at batch 0 activations fill 0%" and the hint "lower the batch" at batch 1
    cramped = device("cramped", flops=1e9, bandwidth=1e15, usable=32 * 1024)
    item = codes("32x32x8|3x3x8x8(p=1)", profiles=(cramped,))["batch"][0]
    # 32,768 - 2,336 = 30,432 B = 29.7 KiB left; 65,536 B = 64.0 KiB per sample
    assert "one sample's activations (64.0 KiB) exceed the 29.7 KiB left after the weights" in item.message
    assert "at batch 0" not in item.message and "lower the batch" not in item.hint
    assert "--dtype float16" in item.hint and "downsample earlier" in item.hint
    assert "cut parameters" not in item.hint
    # FC(4096) on 8x8x1: (64 * 4,096 + 4,096) * 2 B = 532,480 B in float16, over 512 KiB = 524,288 B;
    # already 2 bytes a value and already batch 1: only fewer parameters help
    half = Profile(name="half", description="", peak_flops_per_s={"float16": 1e12}, mem_bytes_per_s=1e12,
                   mem_bytes=512 * 1024, usable_mem_bytes=512 * 1024, launch_overhead_s=0.0, efficiency={},
                   sources={})
    report = analyze(parse("8x8x1|FC(4096)"), dtype="float16", profiles=[half])
    item = next(a for a in advise(report, None, [half]) if a.code == "batch")
    assert "the weights alone exceed it" in item.message
    assert item.hint == ("inference at batch 1 does not fit; training at batch 1 does not fit: "
                         "cut parameters (a GAP before the classifier, fewer channels)")


def test_no_batch_advice_without_profiles():
    assert "batch" not in codes("32x32x8|3x3x8x8(p=1)")


# ---- shape checkpoints -----------------------------------------------------------------------------
def test_failed_checkpoint_becomes_advice_with_the_fix():
    with pytest.raises(SpecError) as caught:
        parse("224x224x32|3x3x32x64(p=0,s=2)|112x112x64")
    item = checkpoint_advice(caught.value)[0]
    # floor((224 + 0 - 3) / 2) + 1 = 111, not the 112 written; p=1 gives floor(223 / 2) + 1 = 112
    assert (item.numbers["wanted"], item.numbers["actual"]) == ("112x112x64", "111x111x64")
    assert "p=1" in item.hint and item.level == "error"


def test_other_spec_errors_are_not_checkpoint_advice():
    with pytest.raises(SpecError) as caught:
        parse("32x32x3|NoSuchOp")
    assert checkpoint_advice(caught.value) == []


# ---- wiring ----------------------------------------------------------------------------------------------
def test_analysis_diagnostics_keep_the_static_rules_and_refresh_adds_the_rest():
    graph = parse(POOLED)
    report = analyze(graph, profiles=[MEMORY_BOUND])
    assert "stride-for-pool" not in {d.code for d in report.diagnostics}  # analysis runs before costs exist
    refresh(report, object_size=4, profiles=[MEMORY_BOUND])
    found = [d.code for d in report.diagnostics]
    assert {"stride-for-pool", "batch", "object-size"} <= set(found)
    refresh(report, object_size=4, profiles=[MEMORY_BOUND])
    assert [d.code for d in report.diagnostics] == found  # nothing doubled
