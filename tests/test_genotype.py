"""Genotype as data: JSON, DARTS text and NB201 strings in and out, validation, the zoo, the LHD .pl importer."""

from __future__ import annotations

import builtins
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from robustdarts.errors import RobustDartsError
from robustdarts.genotype import Genotype, parse_darts_text, validate
from robustdarts.lhd_pl import genotype_from_pl, load_pl
from robustdarts.zoo import GENOTYPES, get_genotype

from conftest import LHD_EXAMPLE
needs_lhd_data = pytest.mark.skipif(not LHD_EXAMPLE.exists(), reason="LHD reference files not present")


def assert_one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    assert not re.search(r"\.\s+[A-Z]", message), f"more than one sentence: {message}"
    return message


# The SP-DARTS line exactly as the reference repo writes it (an invalid Python name, range() concat).
SP_DARTS_REFERENCE = (
    "SP-DARTS=Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 2), ('skip_connect', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_5x5', 4), ('sep_conv_5x5', 3)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 2), ('dil_conv_5x5', 1), ('skip_connect', 3),"
    " ('dil_conv_5x5', 2), ('dil_conv_5x5', 4), ('sep_conv_5x5', 3)], reduce_concat=range(2, 6))\n")

# NASNet as the DARTS repo lays it out: one gene per line, trailing commas; here with double quotes.
NASNET_MULTILINE = """
NASNet = Genotype(
  normal = [
    ("sep_conv_5x5", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_5x5", 0),
    ("sep_conv_3x3", 0),
    ("avg_pool_3x3", 1),
    ("skip_connect", 0),
    ("avg_pool_3x3", 0),
    ("avg_pool_3x3", 0),
    ("sep_conv_3x3", 1),
    ("skip_connect", 1),
  ],
  normal_concat = [2, 3, 4, 5, 6],
  reduce = [
    ("sep_conv_5x5", 1),
    ("sep_conv_7x7", 0),
    ("max_pool_3x3", 1),
    ("sep_conv_7x7", 0),
    ("avg_pool_3x3", 1),
    ("sep_conv_5x5", 0),
    ("skip_connect", 3),
    ("avg_pool_3x3", 2),
    ("sep_conv_3x3", 2),
    ("max_pool_3x3", 1),
  ],
  reduce_concat = [4, 5, 6],
)
"""

NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def lhd_example() -> Genotype:
    return Genotype(kind="lhd", space="lhd",
                    normal=[("skip_connect", 0, 0), ("sep_conv_5x5", 0, 0), ("skip_connect", 2, 1)],
                    reduce=[("avg_pool_3x3", 1, 0), ("max_pool_3x3", 1, 0)],
                    normal_output={"sum": [1], "concat": [1, 0]}, reduce_output={"sum": [0], "concat": [0]})


# ---- zoo -----------------------------------------------------------------------------------------------------
def test_zoo_holds_the_published_entries():
    assert set(GENOTYPES) == {"darts_v1", "darts_v2", "darts", "nasnet", "amoebanet", "sp_darts"}
    assert get_genotype("darts") is get_genotype("DARTS_V2") is GENOTYPES["darts_v2"]
    assert get_genotype("SP-DARTS") is GENOTYPES["sp_darts"]
    nasnet, amoeba = GENOTYPES["nasnet"], GENOTYPES["amoebanet"]
    assert nasnet.num_nodes == amoeba.num_nodes == 5
    assert nasnet.normal_concat == (2, 3, 4, 5, 6) and nasnet.reduce_concat == (4, 5, 6)
    assert amoeba.normal_concat == (4, 5, 6) and amoeba.reduce_concat == (3, 4, 6)
    assert amoeba.reduce[-2:] == (("conv_7x1_1x7", 0), ("sep_conv_3x3", 5))
    # D §1.9, DARTS_V2 normal: sep3@0, sep3@1 | sep3@0, sep3@1 | sep3@1, skip@0 | skip@0, dil3@2
    assert GENOTYPES["darts_v2"].node_inputs("normal") == (
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)), (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 1), ("skip_connect", 0)), (("skip_connect", 0), ("dil_conv_3x3", 2)))
    validate(GENOTYPES["darts_v1"], "darts")
    validate(GENOTYPES["darts_v2"], "darts-7")
    validate(GENOTYPES["sp_darts"], "darts-7")
    validate(nasnet)  # no space: ops must be known DARTS-family ops
    validate(amoeba)


def test_unknown_zoo_name_lists_the_names():
    with pytest.raises(RobustDartsError) as error:
        get_genotype("enas")
    message = assert_one_sentence(error)
    assert "'enas'" in message and "amoebanet" in message and "sp_darts" in message


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_every_zoo_genotype_round_trips(name, tmp_path):
    genotype = GENOTYPES[name]
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    assert parse_darts_text(genotype.to_darts_text(), space=genotype.space) == genotype
    path = genotype.save(tmp_path / "deep" / "genotype.json")
    assert Genotype.load(path) == genotype
    assert os.listdir(path.parent) == ["genotype.json"]  # the temp file was renamed, not left behind


# ---- JSON ----------------------------------------------------------------------------------------------------
def test_json_round_trip_for_every_kind(tmp_path):
    for genotype in (GENOTYPES["darts_v2"], lhd_example(), Genotype.from_nb201(NB201_EXAMPLE)):
        text = genotype.to_json()
        assert Genotype.from_json(text) == genotype
        assert Genotype.from_json(text).to_json() == text
        assert Genotype.load(genotype.save(tmp_path / f"{genotype.kind}.json")) == genotype
        assert hash(Genotype.from_json(text)) == hash(genotype)


def test_save_replaces_an_old_file_atomically(tmp_path):
    path = tmp_path / "g.json"
    GENOTYPES["darts_v1"].save(path)
    GENOTYPES["darts_v2"].save(path)
    assert Genotype.load(path) == GENOTYPES["darts_v2"]
    assert sorted(os.listdir(tmp_path)) == ["g.json"]


@pytest.mark.parametrize("text", [
    "{",
    "[]",
    '{"kind": "darts"}',
    '{"kind": "mobilenet", "normal": [["skip_connect", 0]]}',
    '{"kind": "darts", "normal": [["skip_connect", 0], ["skip_connect", 1]], "normal_concat": [2],'
    ' "reduce": [["skip_connect", 0], ["skip_connect", 1]], "reduce_concat": [2], "colour": "red"}',
    '{"format": "robustdarts.genotype", "version": 7, "kind": "darts", "normal": []}',
    '{"kind": "darts", "normal": [["skip_connect"]], "normal_concat": [2]}',
    '{"kind": "darts", "normal": [["skip_connect", true], ["skip_connect", 1]], "normal_concat": [2]}',
    '{"kind": "darts", "normal": [["skip_connect", 0], ["skip_connect", 1]], "normal_concat": [2]}',  # no reduce
    '{"kind": "lhd", "normal": [["skip_connect", 0, 0]], "normal_output": {"sum": [0]}}',
    '{"kind": "lhd", "normal": [["skip_connect", 0, 0]], "normal_output": {"sum": [3], "concat": [0]},'
    ' "reduce": [["skip_connect", 0, 0]], "reduce_output": {"sum": [0], "concat": [0]}}',
])
def test_malformed_json_is_one_sentence(text):
    with pytest.raises(RobustDartsError) as error:
        Genotype.from_json(text)
    assert_one_sentence(error)


def test_input_index_out_of_range():
    data = GENOTYPES["darts_v2"].to_dict()
    data["normal"][2] = ["sep_conv_3x3", 3]  # node 1 sees s0, s1, n0 only
    with pytest.raises(RobustDartsError) as error:
        Genotype.from_dict(data)
    message = assert_one_sentence(error)
    assert "input 3" in message and "0..2" in message


def test_concat_out_of_range():
    data = GENOTYPES["darts_v2"].to_dict()
    data["reduce_concat"] = [2, 3, 4, 5, 6]
    with pytest.raises(RobustDartsError) as error:
        Genotype.from_dict(data)
    assert "0..5" in assert_one_sentence(error)


# ---- validation against spaces -------------------------------------------------------------------------------
S1_SECOND_OPS = [
    ("dil_conv_3x3", 0), ("dil_conv_5x5", 1),
    ("dil_conv_5x5", 0), ("sep_conv_3x3", 1),
    ("skip_connect", 0), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0), ("skip_connect", 1),
]
S1_REDUCE_SECOND_OPS = [
    ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
    ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
    ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
    ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
]


def test_validate_per_edge_op_lists_of_s1():
    # Node i, inputs 0 and 1 (s0, s1): the ops S1 allows on exactly those edges (D §2.1 table).
    ok = Genotype(kind="darts", normal=S1_SECOND_OPS, reduce=S1_REDUCE_SECOND_OPS,
                  normal_concat=[2, 3, 4, 5], reduce_concat=[2, 3, 4, 5], space="s1")
    assert validate(ok) is ok
    with pytest.raises(RobustDartsError) as error:
        validate(GENOTYPES["darts_v2"], "s1")  # sep_conv_3x3 on e0 (n0 <- s0): S1 allows skip or dil_conv_3x3
    message = assert_one_sentence(error)
    assert "'sep_conv_3x3'" in message and "edge 0" in message and "skip_connect, dil_conv_3x3" in message
    wrong = Genotype(kind="darts", normal=S1_SECOND_OPS[:3] + [("dil_conv_3x3", 1)] + S1_SECOND_OPS[4:],
                     reduce=ok.reduce, normal_concat=[2, 3, 4, 5], reduce_concat=[2, 3, 4, 5])
    with pytest.raises(RobustDartsError) as error:
        validate(wrong, "s1")
    assert "edge 3" in assert_one_sentence(error) and "skip_connect, sep_conv_3x3" in str(error.value)


def test_validate_node_count_kind_and_unknown_ops():
    with pytest.raises(RobustDartsError) as error:
        validate(GENOTYPES["nasnet"], "darts")
    assert "5 nodes" in assert_one_sentence(error)
    with pytest.raises(RobustDartsError) as error:
        validate(GENOTYPES["darts_v2"], "lhd")
    assert "darts-7" in assert_one_sentence(error)
    strange = Genotype(kind="darts", normal=[("conv_9x9", 0), ("skip_connect", 1)],
                       reduce=[("skip_connect", 0), ("skip_connect", 1)], normal_concat=[2], reduce_concat=[2])
    with pytest.raises(RobustDartsError) as error:
        validate(strange)
    assert "'conv_9x9'" in assert_one_sentence(error)
    with pytest.raises(RobustDartsError) as error:
        validate(GENOTYPES["darts_v2"], "no-such-space")
    assert_one_sentence(error)


def test_lhd_and_nb201_validate_against_their_spaces():
    validate(lhd_example(), "lhd")
    validate(Genotype.from_nb201(NB201_EXAMPLE), "nb201")
    bad = Genotype.from_nb201(NB201_EXAMPLE.replace("nor_conv_1x1", "sep_conv_3x3"), space=None)
    with pytest.raises(RobustDartsError) as error:
        validate(bad, "nb201")
    assert "none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3" in assert_one_sentence(error)


# ---- DARTS text ----------------------------------------------------------------------------------------------
def test_reference_text_forms_parse():
    assert parse_darts_text(SP_DARTS_REFERENCE, space="darts-7") == GENOTYPES["sp_darts"]
    assert parse_darts_text(NASNET_MULTILINE) == GENOTYPES["nasnet"]
    v2 = GENOTYPES["darts_v2"]
    fields = v2.to_darts_text()[len("Genotype("):-1]
    assert parse_darts_text(fields, space="darts") == v2  # no wrapper
    positional = f"genotypes.Genotype({list(v2.normal)}, range(2,6), {list(v2.reduce)}, [2,3,4,5])"
    assert parse_darts_text(positional, space="darts") == v2
    # A leading concat field must not be mistaken for a `NAME = ` prefix.
    reordered = (f"normal_concat=range(2, 6), normal={list(v2.normal)}, reduce_concat=[2, 3, 4, 5], "
                 f"reduce={list(v2.reduce)}")
    assert parse_darts_text(reordered, space="darts") == v2
    assert Genotype.parse(v2.to_darts_text()).normal == v2.normal


def test_lhd_text_round_trip():
    genotype = lhd_example()
    assert parse_darts_text(genotype.to_darts_text(), space="lhd") == genotype


def test_parser_never_evaluates(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert parse_darts_text(SP_DARTS_REFERENCE, space="darts-7") == GENOTYPES["sp_darts"]
    marker = tmp_path / "pwned"
    hostile = (f"Genotype(normal=__import__('os').system('touch {marker}'), normal_concat=[2], "
               f"reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])")
    with pytest.raises(RobustDartsError) as error:
        parse_darts_text(hostile)
    assert "not a literal" in assert_one_sentence(error)
    assert not marker.exists()


@pytest.mark.parametrize("text", [
    "",
    "   \n ",
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]",
    "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]",
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('skip_connect', 0), "
    "('skip_connect', 1)], reduce_concat=[2], colour='red')",
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal=[], reduce_concat=[2])",
    "Genotype(normal=[('sep_conv_3x3', 'zero'), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('skip_connect', 0),"
    " ('skip_connect', 1)], reduce_concat=[2])",
    "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)],"
    " reduce_concat=[2])",
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 9),"
    " reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
    "Genotype(normal=ops, normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(1, 2, 3, 4, 5)",
    "normal=5",
])
def test_malformed_text_is_one_sentence(text):
    with pytest.raises(RobustDartsError) as error:
        parse_darts_text(text)
    assert_one_sentence(error)


# ---- NB201 strings -------------------------------------------------------------------------------------------
def test_nb201_string_in_and_out():
    genotype = Genotype.from_nb201(NB201_EXAMPLE)
    assert genotype.normal == (("nor_conv_3x3", 0, 0), ("nor_conv_3x3", 0, 1), ("avg_pool_3x3", 1, 1),
                               ("skip_connect", 0, 2), ("none", 1, 2), ("nor_conv_1x1", 2, 2))
    assert genotype.to_nb201() == NB201_EXAMPLE and str(genotype) == NB201_EXAMPLE
    assert Genotype.parse("  " + NB201_EXAMPLE + "\n") == genotype
    assert genotype.num_nodes == 3 and genotype.cells == ("normal",)


@pytest.mark.parametrize("text", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # only two nodes: a valid DAG, but not the nb201 cell
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~5|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "|nor_conv_3x3-0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",
    "||",
])
def test_malformed_nb201_strings(text):
    if text.count("+") == 1:  # two complete nodes form a valid smaller DAG; the nb201 space needs three
        with pytest.raises(RobustDartsError) as error:
            validate(Genotype.from_nb201(text), "nb201")
    else:
        with pytest.raises(RobustDartsError) as error:
            Genotype.from_nb201(text)
    assert_one_sentence(error)


def test_describe_names_every_node():
    text = GENOTYPES["darts_v2"].describe()
    assert "n3 = skip_connect(s0) + dil_conv_3x3(n0)" in text and "output = concat(n0, n1, n2, n3)" in text
    lhd = lhd_example().describe()
    assert "n1 = skip_connect(n0)" in lhd and "sum output = n1" in lhd and "concat output = concat(n1, n0)" in lhd


# ---- LHD .pl importer ----------------------------------------------------------------------------------------
@needs_lhd_data
def test_load_pl_reads_the_decoded_example():
    pl = load_pl(LHD_EXAMPLE)
    assert {k: tuple(v.shape) for k, v in pl.items()} == {
        "P_normal": (20, 7), "P_reduce": (20, 7), "O_normal": (2, 5), "O_reduce": (2, 5)}
    # L §1.5: P_normal row 0 and O_normal, to three decimals.
    assert np.allclose(pl["P_normal"][0].numpy(), [.077, .087, .101, .066, .089, .072, .070], atol=5e-4)
    assert np.allclose(pl["O_normal"].numpy(), [[.187, .163, .235, .191, .225], [.367, .359, .391, .427, .401]],
                       atol=5e-4)
    assert validate(genotype_from_pl(LHD_EXAMPLE), "lhd").space == "lhd"


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pl"
    path.write_bytes(pickle.dumps([_Exploit(marker)], protocol=3))
    with pytest.raises(RobustDartsError) as error:
        load_pl(path)
    assert "system" in assert_one_sentence(error)
    assert not marker.exists()
    with pytest.raises(RobustDartsError):
        genotype_from_pl(path)
    assert not marker.exists()


@pytest.mark.parametrize("arrays", [
    [np.zeros((20, 7), np.float32)] * 3,
    {"P_normal": np.zeros((20, 7), np.float32)},
    [np.zeros((14, 8), np.float32), np.zeros((20, 7), np.float32), np.zeros((2, 5), np.float32),
     np.zeros((2, 5), np.float32)],
    [np.full((20, 7), 3.0, np.float32), np.zeros((20, 7), np.float32), np.zeros((2, 5), np.float32),
     np.zeros((2, 5), np.float32)],  # logits, not probabilities
    [np.full((20, 7), 0.01, np.float32), np.full((20, 7), 0.01, np.float32), np.full((2, 5), 0.2, np.float32),
     np.full((2, 5), 0.2, np.float32)],  # node blocks do not sum to 1
    [np.zeros((20, 7), np.int64)] * 2 + [np.zeros((2, 5), np.int64)] * 2,
])
def test_malformed_pl_files(arrays, tmp_path):
    path = tmp_path / "bad.pl"
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    with pytest.raises(RobustDartsError) as error:
        load_pl(path)
    assert_one_sentence(error)


def test_missing_and_garbage_files(tmp_path):
    for call in (load_pl, Genotype.load):
        with pytest.raises(RobustDartsError) as error:
            call(tmp_path / "absent")
        assert_one_sentence(error)
    (tmp_path / "garbage.pl").write_bytes(b"\x80\x03not a pickle")
    with pytest.raises(RobustDartsError) as error:
        load_pl(tmp_path / "garbage.pl")
    assert_one_sentence(error)
