"""Read one recording file (.csv, .txt, .npy) into a ``(T, C)`` float32 array.

Every problem becomes a ``UserError`` naming the file, the line and column
(1-based, as an editor shows them), what was found and how to fix it.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from tinyml_modelzoo.errors import UserError

SUPPORTED_EXTENSIONS = (".csv", ".txt", ".npy")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def read_recording(path: Path, name: str) -> np.ndarray:
    """Load ``path`` (shown to the user as ``name``) as ``(T, C)`` float32 with finite values."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = _read_npy(path, name)
        _check_finite(data, name, lambda row: f"row {row}", [f"{c + 1}" for c in range(data.shape[1])])
    elif suffix in (".csv", ".txt"):
        data, header_lines, columns = _read_text(path, name)
        _check_finite(data, name, lambda row: f"line {header_lines + row + 1}", columns)
    else:
        raise UserError(f"{name}: unsupported file type '{path.suffix}'; use one of "
                        f"{', '.join(SUPPORTED_EXTENSIONS)}")
    return data


def _read_npy(path: Path, name: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{name}: not a readable numeric .npy array ({exc}); save it with "
                        "numpy.save(path, array) from a float array of shape (T,) or (T, C)") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
        raise UserError(f"{name}: .npy dtype {array.dtype} is not a real number type; save a float array")
    if array.ndim not in (1, 2) or array.shape[0] == 0:
        raise UserError(f"{name}: .npy array has shape {array.shape}; expected (T,) or (T, C) "
                        "with T samples in time and C variables")
    return _as_float32(array.reshape(len(array), -1).astype(np.float64))


def _read_text(path: Path, name: str) -> tuple[np.ndarray, int, list[str]]:
    """Return the data, the number of file lines before it (leading blanks + header) and
    each kept column as the user sees it in the file (``"3 ('current')"``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{name}: cannot read as UTF-8 text ({exc}); save it as a plain-text CSV") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise UserError(f"{name}: the file is empty; remove it or fill it with samples (one row per time step)")
    sep = _separator(lines[first])
    fields = _split(lines[first], sep)
    has_header = not all(_NUMBER.match(f) for f in fields if f)
    header_lines = first + (1 if has_header else 0)
    body = "\n".join(lines[header_lines:])
    if not body.strip():
        raise UserError(f"{name}: header but no data rows; remove the file or add samples")
    frame = _numeric_table(body, sep)
    if frame is None:  # something is not a number: parse text cells to name it (in _to_float)
        try:
            frame = pd.read_csv(io.StringIO(body), sep=sep, header=None, dtype=str, keep_default_na=False,
                                skip_blank_lines=True, skipinitialspace=True, engine="c")
        except (pd.errors.ParserError, ValueError) as exc:
            reason = str(exc).replace("Error tokenizing data. C error: ", "").strip()
            reason = re.sub(r"line (\d+)", lambda m: f"line {int(m.group(1)) + header_lines}", reason)
            raise UserError(f"{name}: malformed table ({reason}); every row needs the same number of "
                            f"'{sep}'-separated columns") from None
    names = _column_names(frame, fields, name) if has_header else list(range(frame.shape[1]))
    if len(names) < frame.shape[1]:  # a separator closing every line: no column there
        frame = frame.iloc[:, :len(names)]
    keep = [i for i, c in enumerate(names) if not (has_header and "time" in str(c).lower())]
    if not keep:
        raise UserError(f"{name}: no data columns (only time columns: {names}); add at least one sensor column")
    columns = [f"{i + 1} ('{names[i]}')" if has_header else f"{i + 1}" for i in keep]
    return _to_float(frame.iloc[:, keep], name, header_lines, columns, sep), header_lines, columns


def _numeric_table(body: str, sep: str) -> pd.DataFrame | None:
    """The table parsed as numbers by pandas' C parser (0.04 s for 82k rows x 3; text cells and
    numpy's conversion take 10x longer), or None when any cell is not a plain finite-or-not number."""
    try:
        frame = pd.read_csv(io.StringIO(body), sep=sep, header=None, dtype=np.float64, skip_blank_lines=True,
                            skipinitialspace=True, decimal="," if sep == ";" else ".", engine="c")
    except (pd.errors.ParserError, ValueError):
        return None
    # empty cells and NA words become NaN here; the text path reports them
    return None if frame.isna().to_numpy().any() else frame


def _column_names(frame: pd.DataFrame, fields: list[str], name: str) -> list[str]:
    """The header's names for the data columns. A separator closing every line (an empty last
    header field and/or an empty last data column) is not a column; any other mismatch is an error."""
    fields = [f.strip('"') for f in fields]
    if len(fields) > 1 and fields[-1] == "":
        fields = fields[:-1]
    trailing = frame.shape[1] == len(fields) + 1 and (frame.iloc[:, -1] == "").all()
    if frame.shape[1] != len(fields) and not trailing:
        raise UserError(f"{name}: the header names {len(fields)} columns ({', '.join(fields)}) but the data rows "
                        f"have {frame.shape[1]} fields; give every column one header name")
    return fields


def _separator(line: str) -> str:
    """The field separator of a data line: ';' then ',' then tab, else runs of whitespace."""
    for sep in (";", ",", "\t"):
        if sep in line:
            return sep
    return r"\s+"


def _split(line: str, sep: str) -> list[str]:
    return [f.strip() for f in (line.split() if sep == r"\s+" else line.split(sep))]


def _to_float(frame: pd.DataFrame, name: str, header_lines: int, columns: list[str], sep: str) -> np.ndarray:
    """Parse all cells at once; on failure name the first cell that is not a number."""
    if all(pd.api.types.is_float_dtype(t) for t in frame.dtypes):
        return _as_float32(frame.to_numpy(dtype=np.float64))
    strings = frame.to_numpy(dtype=str)
    if sep == ";":  # European CSV: ';' between fields, ',' as the decimal mark
        strings = np.char.replace(strings, ",", ".")
    try:  # fast path: numpy parses every cell in C
        numeric = strings.astype(np.float64)
        if np.isfinite(numeric).all():
            return _as_float32(numeric)
    except ValueError:
        pass
    numeric = pd.DataFrame(strings).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    stripped = np.char.lower(np.char.strip(strings))
    blank = stripped == ""
    bad = (np.isnan(numeric) & ~np.isin(stripped, ["nan", "+nan", "-nan"])) | blank
    if bad.any():
        row, col = np.argwhere(bad)[0]
        what = "an empty cell" if blank[row, col] else f"{str(strings[row, col])!r}, which is not a number"
        raise UserError(f"{name}: line {header_lines + row + 1}, column {columns[col]}: {what}; "
                        "fix or remove that row (only numeric columns and a time column are allowed)")
    return _as_float32(numeric)


def _as_float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported by _check_finite
        return values.astype(np.float32)


def _check_finite(data: np.ndarray, name: str, where, columns: list[str]) -> None:
    """NaN/inf (also float32 overflow) → error naming the first bad sample; ``where(row)`` words its place."""
    finite = np.isfinite(data)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise UserError(f"{name}: {where(row)}, column {columns[col]}: value {data[row, col]} is not finite "
                        f"(NaN or inf, or beyond the float32 range; first of {int((~finite).sum())}); "
                        "interpolate or drop those samples, or remove the file")
