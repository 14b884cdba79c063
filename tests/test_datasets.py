"""Dataset stage: hello_world, the class-folder format, splits, zips and every user error."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyml_modelzoo.config.schema import DatasetConfig
from tinyml_modelzoo.datasets import DatasetSplits, load_dataset
from tinyml_modelzoo.datasets import hello_world
from tinyml_modelzoo.datasets.splits import split_counts
from tinyml_modelzoo.errors import UserError


def load(tmp_path: Path, seed: int = 0, run_dir: Path | None = None, **cfg) -> DatasetSplits:
    return load_dataset(DatasetConfig(**cfg), seed, tmp_path, run_dir)


def write(root: Path, files: dict) -> Path:
    """Write ``{relative path: str | bytes | ndarray}`` under root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            np.save(path, content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def csv_rows(n: int, cols: int, start: float = 0.0, sep: str = ",") -> str:
    values = np.arange(n * cols, dtype=float).reshape(n, cols) + start
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in values)


def simple_dataset(root: Path, per_class: int = 5, classes=("a", "b"), length: int = 40) -> Path:
    return write(root, {f"classes/{c}/f{i}.csv": csv_rows(length, 2, i) for c in classes for i in range(per_class)})


# ---------------------------------------------------------------- hello_world

def test_hello_world_is_deterministic_and_seeded(tmp_path):
    a, b, c = load(tmp_path, 3), load(tmp_path, 3), load(tmp_path, 4)
    for split in ("train", "val", "test"):
        assert [r.source for r in a.split(split)] == [r.source for r in b.split(split)]
        for ra, rb in zip(a.split(split), b.split(split)):
            np.testing.assert_array_equal(ra.data, rb.data)
    assert not np.array_equal(a.train[0].data, c.train[0].data)


def test_hello_world_shapes_and_classes(tmp_path):
    splits = load(tmp_path, hello_world_files_per_class=10)
    assert splits.class_names == tuple(sorted(splits.class_names)) and len(splits.class_names) == 4
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 8, 8)
    rec = splits.train[0]
    assert rec.data.shape == (hello_world.LENGTH, 1) and rec.data.dtype == np.float32
    assert rec.source.startswith("hello_world/") and splits.split_source == "split_factor"
    assert np.bincount([r.label for r in splits.train]).tolist() == [6, 6, 6, 6]


def test_hello_world_multi_variable_channels_are_correlated_not_equal(tmp_path):
    splits = load(tmp_path, hello_world_variables=3, hello_world_files_per_class=4)
    assert splits.num_variables == 3
    data = splits.train[0].data
    assert data.shape[1] == 3 and not np.allclose(data[:, 0], data[:, 1])


def test_hello_world_generation_is_fast():
    import time
    start = time.process_time()  # CPU time: robust to a loaded CI machine
    hello_world.generate(40, 4, 0)
    assert time.process_time() - start < 1.0


# ---------------------------------------------------------------- folder format

def test_ti_folder_with_mixed_formats_and_annotations(tmp_path):
    write(tmp_path / "ds", {
        "classes/arc/a1.csv": "Time,current,voltage\n" + "".join(f"{t},{t * 2},{t * 3}\n" for t in range(50)),
        "classes/arc/a2.txt": csv_rows(60, 2, sep=" "),
        "classes/arc/.DS_Store": b"\x00junk",
        "classes/normal/n1.npy": np.ones((70, 2), dtype=np.float64),
        "classes/normal/n2.csv": "sensor_a;sensor_b\n" + csv_rows(30, 2, sep=";"),
        "classes/normal/n3.txt": csv_rows(30, 2, sep="\t"),
        "annotations/instances_train_list.txt": "classes/arc/a1.csv\nnormal/n1.npy\n\n",
        "annotations/instances_val_list.txt": "classes/arc/a2.txt\n",
        "annotations/instances_test_list.txt": "classes/normal/n2.csv\n",
    })
    splits = load(tmp_path, input_data_path="ds", dataset_name="mine")
    assert splits.class_names == ("arc", "normal") and splits.num_variables == 2
    assert splits.split_source == "annotations"
    assert [(r.source, r.label) for r in splits.train] == [("classes/arc/a1.csv", 0), ("classes/normal/n1.npy", 1)]
    assert [r.source for r in splits.val] == ["classes/arc/a2.txt"]
    assert [r.source for r in splits.test] == ["classes/normal/n2.csv"]
    a1 = splits.train[0].data
    assert a1.shape == (50, 2) and a1[3].tolist() == [6.0, 9.0]  # time column dropped
    assert splits.val[0].data.shape == (60, 2) and splits.test[0].data.shape == (30, 2)


def test_absolute_input_path_and_headerless_single_column(tmp_path):
    root = write(tmp_path / "ds", {"classes/x/1.csv": "1\n2\n3\n", "classes/y/1.txt": "4\n5\n6\n"})
    splits = load(Path("/nonexistent"), input_data_path=str(root), split_factor=[1.0, 0.0, 0.0])
    assert splits.num_variables == 1 and [r.data.ravel().tolist() for r in splits.train] == [[1, 2, 3], [4, 5, 6]]


def test_stratified_split_is_proportional_seeded_and_written(tmp_path):
    simple_dataset(tmp_path / "ds", per_class=10, classes=("a", "b", "c"))
    run = tmp_path / "run"
    one = load(tmp_path, 7, run, input_data_path="ds", split_factor=[0.6, 0.2, 0.2])
    two = load(tmp_path, 7, None, input_data_path="ds", split_factor=[0.6, 0.2, 0.2])
    other = load(tmp_path, 8, None, input_data_path="ds", split_factor=[0.6, 0.2, 0.2])
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        assert np.bincount([r.label for r in one.split(split)]).tolist() == [n, n, n]
        assert [r.source for r in one.split(split)] == [r.source for r in two.split(split)]
        listed = (run / "dataset" / f"instances_{split}_list.txt").read_text().split()
        assert listed == [r.source for r in one.split(split)]
    assert [r.source for r in one.test] != [r.source for r in other.test]
    sources = [r.source for s in ("train", "val", "test") for r in one.split(s)]
    assert len(sources) == len(set(sources)) == 30


def test_written_lists_reload_as_annotations(tmp_path):
    simple_dataset(tmp_path / "ds", per_class=5)
    run = tmp_path / "run"
    first = load(tmp_path, 1, run, input_data_path="ds")
    (tmp_path / "ds" / "annotations").mkdir()
    for split in ("train", "val", "test"):
        (run / "dataset" / f"instances_{split}_list.txt").rename(
            tmp_path / "ds" / "annotations" / f"instances_{split}_list.txt")
    again = load(tmp_path, 99, None, input_data_path="ds")
    assert again.split_source == "annotations"
    assert [r.source for r in again.test] == [r.source for r in first.test]


def test_too_few_files_warns_and_keeps_train(tmp_path, caplog):
    simple_dataset(tmp_path / "ds", per_class=1)
    with caplog.at_level(logging.WARNING):
        splits = load(tmp_path, input_data_path="ds")
    assert len(splits.train) == 2 and not splits.val and not splits.test
    assert "too few files" in caplog.text


def test_within_files_cuts_each_recording_in_time(tmp_path):
    simple_dataset(tmp_path / "ds", per_class=2, length=100)
    splits = load(tmp_path, input_data_path="ds", split_type="within_files", split_factor=[0.5, 0.3, 0.2])
    assert [len(r.data) for r in splits.train] == [50] * 4
    assert [len(r.data) for r in splits.val] == [30] * 4 and [len(r.data) for r in splits.test] == [20] * 4
    assert splits.val[0].source == "classes/a/f0.csv@val"
    # consecutive segments: val starts where train ended (the file counts up by 2 per row)
    assert splits.val[0].data[0, 0] == splits.train[0].data[-1, 0] + 2


def test_zip_is_extracted_inside_the_run_folder(tmp_path):
    simple_dataset(tmp_path / "src" / "my_ds")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "src").rglob("*.csv"):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    run = tmp_path / "run"
    splits = load(tmp_path, 0, run, input_data_path="data.zip")
    assert splits.class_names == ("a", "b") and (run / "dataset" / "extracted" / "my_ds" / "classes").is_dir()
    assert load(tmp_path, 0, None, input_data_path="data.zip").class_names == ("a", "b")


@pytest.mark.parametrize("member", ["../evil.csv", "/abs/evil.csv", "ds/../../evil.csv", "C:/evil.csv"])
def test_zip_slip_is_rejected_before_writing(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ds/classes/a/1.csv", "1\n2\n")
        zf.writestr(member, "1\n")
    run = tmp_path / "run"
    with pytest.raises(UserError, match="zip-slip") as err:
        load(tmp_path, 0, run, input_data_path="bad.zip")
    assert "bad.zip" in str(err.value)
    assert not (tmp_path / "evil.csv").exists() and not (run / "dataset" / "extracted").exists()


# ---------------------------------------------------------------- user errors

def expect_error(tmp_path, files: dict, *fragments, **cfg):
    write(tmp_path / "ds", files)
    cfg.setdefault("input_data_path", "ds")
    with pytest.raises(UserError) as err:
        load(tmp_path, **cfg)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


GOOD = {"classes/a/ok.csv": "1,2\n3,4\n", "classes/b/ok.csv": "1,2\n3,4\n"}


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        load(tmp_path, input_data_path="nowhere")


def test_missing_classes_folder(tmp_path):
    expect_error(tmp_path, {"other/a.csv": "1\n"}, "no classes/ folder")


def test_empty_class_folder(tmp_path):
    (tmp_path / "ds" / "classes" / "empty").mkdir(parents=True)
    expect_error(tmp_path, GOOD, "classes/empty", "empty class folder")


def test_fewer_than_two_classes(tmp_path):
    expect_error(tmp_path, {"classes/only/x.csv": "1\n"}, "at least 2", "only")


def test_unsupported_extension(tmp_path):
    expect_error(tmp_path, {**GOOD, "classes/a/data.xlsx": "x"}, "data.xlsx", ".csv")


def test_non_numeric_cell_names_file_line_column_value(tmp_path):
    # columns are counted as in the file, time column included
    expect_error(tmp_path, {**GOOD, "classes/a/bad.csv": "Time_s,x,y\n0,1,2\n1,3,oops\n"},
                 "classes/a/bad.csv", "line 3", "column 3 ('y')", "'oops'")


def test_empty_cell(tmp_path):
    expect_error(tmp_path, {**GOOD, "classes/a/gap.csv": "1,2\n3,\n"}, "classes/a/gap.csv", "line 2", "empty cell")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_nan_or_inf_in_csv(tmp_path, value):
    expect_error(tmp_path, {**GOOD, "classes/a/nan.csv": f"x,y\n1,2\n3,4\n5,{value}\n"},
                 "classes/a/nan.csv", "line 4", "NaN or inf")


def test_nan_in_npy(tmp_path):
    array = np.zeros((10, 2))
    array[6, 1] = np.nan
    expect_error(tmp_path, {**GOOD, "classes/a/n.npy": array}, "classes/a/n.npy", "row 6")


def test_bad_npy_shape_and_content(tmp_path):
    expect_error(tmp_path, {**GOOD, "classes/a/n.npy": np.zeros((2, 3, 4))}, "classes/a/n.npy", "(T, C)")
    (tmp_path / "ds" / "classes" / "a" / "n.npy").write_bytes(b"not numpy")
    expect_error(tmp_path, {}, "classes/a/n.npy")


def test_different_column_counts_name_one_file_each(tmp_path):
    expect_error(tmp_path, {"classes/a/two.csv": "1,2\n3,4\n", "classes/b/three.csv": "1,2,3\n4,5,6\n"},
                 "classes/a/two.csv: 2", "classes/b/three.csv: 3")


def test_ragged_rows_in_one_file(tmp_path):
    expect_error(tmp_path, {**GOOD, "classes/a/ragged.csv": "1,2\n3,4,5\n"}, "classes/a/ragged.csv", "line 2")
    # the line number counts the header too
    expect_error(tmp_path, {**GOOD, "classes/a/ragged.csv": "x,y\n1,2\n3,4,5\n"}, "ragged.csv", "line 3")


def test_header_and_data_field_counts_must_match(tmp_path):
    # pandas alone would take the surplus first field as a row index and shift every column
    expect_error(tmp_path, {**GOOD, "classes/a/short.csv": "x,y\n1,2,5\n3,4,6\n"}, "short.csv",
                 "header names 2 columns (x, y)", "3 fields")


def test_a_separator_closing_every_line_is_not_a_column(tmp_path):
    from tinyml_modelzoo.datasets.readers import read_recording
    for text in ("x,y\n1,2,\n3,4,\n", "x,y,\n1,2,\n3,4,\n", "x,y,\n1,2\n3,4\n"):
        path = tmp_path / "trailing.csv"
        path.write_text(text)
        np.testing.assert_array_equal(read_recording(path, "trailing.csv"), [[1, 2], [3, 4]])


def test_empty_and_binary_text_files(tmp_path):
    expect_error(tmp_path, {**GOOD, "classes/a/empty.csv": ""}, "classes/a/empty.csv", "empty")
    (tmp_path / "ds" / "classes" / "a" / "empty.csv").write_bytes(b"\xff\xfe\x00\x81")
    expect_error(tmp_path, {}, "classes/a/empty.csv")


@pytest.mark.parametrize("line, fragment", [("../../etc/passwd", "outside"), ("/etc/passwd", "absolute"),
                                            ("classes/a/missing.csv", "does not exist")])
def test_bad_annotation_lines(tmp_path, line, fragment):
    expect_error(tmp_path, {**GOOD, "annotations/instances_train_list.txt": f"classes/a/ok.csv\n{line}\n"},
                 "instances_train_list.txt", "line 2", fragment, line)


def test_file_in_two_splits(tmp_path):
    expect_error(tmp_path, {**GOOD, "annotations/instances_train_list.txt": "classes/a/ok.csv\n",
                            "annotations/instances_test_list.txt": "a/ok.csv\n"},
                 "instances_test_list.txt", "a/ok.csv", "train split")


@pytest.mark.parametrize("factor", [[0.5, 0.5], [0.5, 0.3, 0.3], [0.8, -0.1, 0.3], "0.6,0.2,0.2", [0, 0.5, 0.5],
                                    [True, 0, 0]])
def test_bad_split_factor(tmp_path, factor):
    with pytest.raises(UserError, match="split_factor"):
        load(tmp_path, split_factor=factor)


def test_split_factor_tolerance(tmp_path):
    assert load(tmp_path, split_factor=[0.6, 0.2, 0.2 + 5e-7], hello_world_files_per_class=3).train


def test_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_text("hello")
    with pytest.raises(UserError, match="fake.zip.*not a valid zip"):
        load(tmp_path, input_data_path="fake.zip")


def test_named_dataset_without_path(tmp_path):
    with pytest.raises(UserError, match="input_data_path"):
        load(tmp_path, dataset_name="motor_fault")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), val=st.floats(0, 0.45), test=st.floats(0, 0.45))
def test_split_counts_keep_train_and_fill_requested_splits(n, val, test):
    factor = (1 - val - test, val, test)
    counts = split_counts(n, factor)
    assert sum(counts) == n and counts[0] >= 1 and min(counts) >= 0
    if n >= 3:  # enough files: every requested split gets at least one
        assert all(counts[i] >= 1 for i in (1, 2) if factor[i] > 0)
