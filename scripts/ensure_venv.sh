# Sourced by the run scripts: make .venv/ on first use and install the project into it.
# torch is pinned first so that pip takes the CPU wheel on CPU-only machines instead
# of resolving an unpinned torch to a multi-GB CUDA build.
here="${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
venv="$here/.venv"
stamp="$venv/.installed-$(cksum < "$here/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
    echo "Setting up $venv (first use; takes a minute or two) ..." >&2
    python_bin="${PYTHON:-python3}"
    [ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    torch_pin="${TINYML_TORCH_SPEC:-torch==2.13.0}"
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        # On machines with a local CPU wheel this pin resolves offline; where it is not
        # available, the project install below picks the platform's default torch.
        "$venv/bin/python" -m pip install -q "$torch_pin" >&2 || echo "note: $torch_pin not available; using pip's default torch" >&2
    fi
    "$venv/bin/python" -m pip install -q -e "$here[test]" >&2
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
