# Source this (`. .ci/pythons.sh`): with pyenv, make the newest installed patch
# of Python 3.10, 3.11, 3.12 and 3.13 visible to this shell, so that tox finds
# python3.10 ... python3.13 (pyenv's shims read PYENV_VERSION; tox.ini passes
# it on). Without pyenv it does nothing: the four must then be on PATH.
if command -v pyenv >/dev/null 2>&1; then
    _chosen=""
    for _minor in 3.11 3.10 3.12 3.13; do   # the first one is `python3`
        _version=$(pyenv versions --bare | grep -E "^${_minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1)
        if [ -z "$_version" ]; then
            echo "pyenv has no Python $_minor installed (pyenv install $_minor)" >&2
            return 1 2>/dev/null || exit 1
        fi
        _chosen="${_chosen:+$_chosen:}$_version"
    done
    export PYENV_VERSION="$_chosen"
    unset _chosen _minor _version
fi
