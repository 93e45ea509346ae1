#!/bin/bash
# Install edgetwin as a systemd service on Raspberry Pi OS or Debian (docs/deploy.md).
#
#   sudo deploy/install.sh                       install or upgrade from this checkout
#   sudo deploy/install.sh --source PKG.whl      install a wheel instead
#   sudo deploy/install.sh --uninstall           remove it; keeps /etc/edgetwin and /var/lib/edgetwin
#   deploy/install.sh --destdir /tmp/stage       lay out every file under /tmp/stage only
#
# Running it again changes nothing unless the source, the service files or the venv changed.
# With --destdir (or DESTDIR=) nothing outside that directory is touched: the commands that
# would change the system (systemctl, systemd-sysusers, udevadm, ...) are printed instead.
set -euo pipefail
# The venv and the unit files must be readable by the service user whatever root's umask is.
umask 022

here=$(cd "$(dirname "$0")" && pwd)
wheel_dir=

usage() {
    cat <<EOF
usage: $0 [--source DIR|WHEEL] [--python PY] [--pip-arg ARG]... [--no-enable] [--destdir DIR]
       $0 --uninstall [--destdir DIR]

  --source DIR|WHEEL  the edgetwin checkout or wheel to install (default: $(dirname "$here"))
  --python PY         interpreter for the virtual environment, 3.11 or newer (default: python3)
  --pip-arg ARG       extra argument for pip install, repeatable; for an offline site:
                      --pip-arg=--no-index --pip-arg=--find-links=/media/usb/wheels
  --no-enable         install, but do not enable the service
  --destdir DIR       stage every file under DIR; change nothing on this system
  --uninstall         remove the service, the venv and the system files; keep the
                      configuration (/etc/edgetwin), the outbox (/var/lib/edgetwin) and the user
EOF
}

destdir=${DESTDIR:-}
source=$(dirname "$here")
python=python3
pip_args=()
enable=1
uninstall=0
while [ $# -gt 0 ]; do
    case $1 in
        --source) source=${2:?--source needs a value}; shift 2 ;;
        --source=*) source=${1#*=}; shift ;;
        --python) python=${2:?--python needs a value}; shift 2 ;;
        --python=*) python=${1#*=}; shift ;;
        --pip-arg) pip_args+=("${2:?--pip-arg needs a value}"); shift 2 ;;
        --pip-arg=*) pip_args+=("${1#*=}"); shift ;;
        --destdir) destdir=${2:?--destdir needs a value}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --no-enable) enable=0; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$0: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi

unit=edgetwin.service
venv=$destdir/opt/edgetwin
etc=$destdir/etc/edgetwin
config=$etc/edgetwin.toml
cache=$destdir/var/cache/edgetwin
unit_file=$destdir/etc/systemd/system/$unit
sysusers_file=$destdir/etc/sysusers.d/edgetwin.conf
tmpfiles_file=$destdir/etc/tmpfiles.d/edgetwin.conf
udev_file=$destdir/etc/udev/rules.d/99-edgetwin-serial.rules
doc_file=$venv/share/doc/edgetwin/deploy.md
stamp=$venv/.edgetwin-source

say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "$0" "$*" >&2; exit 1; }

# Run a command that changes the system; with a destdir, only show it.
system() {
    if [ -n "$destdir" ]; then
        say "would run: $*"
    else
        say "+ $*"
        "$@"
    fi
}

# Run a command as the service user (after systemd-sysusers created it).
as_service_user() {
    if [ -n "$destdir" ]; then
        "$@"
    else
        (cd / && runuser -u edgetwin -- "$@")
    fi
}

# Copy $1 to $2 with mode $3 unless $2 already has that content; succeed only if it copied.
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        say "unchanged $2"
        chmod "$3" "$2"
        return 1
    fi
    mkdir -p "$(dirname "$2")" || die "cannot create $(dirname "$2")"
    install -m "$3" "$1" "$2" || die "cannot install $2"
    say "installed $2"
    return 0
}

remove() {
    if [ -e "$1" ]; then
        rm -f "$1"
        say "removed $1"
    fi
}

# A fingerprint of what pip would install, so an unchanged source is not reinstalled.
fingerprint() {
    "$python" - "$1" <<'EOF'
import hashlib, pathlib, sys

src = pathlib.Path(sys.argv[1])
h = hashlib.sha256()
if src.is_file():
    h.update(src.read_bytes())
else:
    for top in ("pyproject.toml", "README.md", "LICENSE", "edgetwin", "firmware_stubs"):
        root = src / top
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            rel = path.relative_to(src)
            if not path.is_file() or "__pycache__" in rel.parts:
                continue
            if path.suffix not in (".pyc", ".nbi", ".nbc"):
                h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
print(h.hexdigest())
EOF
}

do_uninstall() {
    if [ -f "$unit_file" ]; then
        system systemctl disable --now "$unit"
    fi
    remove "$unit_file"
    system systemctl daemon-reload
    remove "$udev_file"
    system udevadm control --reload
    remove "$sysusers_file"
    remove "$tmpfiles_file"
    if [ -f "$venv/pyvenv.cfg" ]; then
        rm -rf "$venv"
        say "removed $venv"
    fi
    if [ -d "$cache" ]; then
        rm -rf "$cache"
        say "removed $cache (kernel cache)"
    fi
    say "kept $etc (configuration), $destdir/var/lib/edgetwin (outbox and twin state)" \
        "and the edgetwin user; delete them by hand if they are no longer needed"
}

do_install() {
    [ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root (sudo $0), or use --destdir"
    [ -e "$source" ] || die "no such source: $source"
    source=$(cd "$(dirname "$source")" && pwd)/$(basename "$source")
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$python is older than 3.11"
    "$python" -c 'import ensurepip, venv' 2>/dev/null ||
        die "$python cannot create virtual environments: apt-get install python3-venv"

    local changed=0 units_changed=0 rules_changed=0

    # 1. The service user and its directories, before anything runs as that user.
    put "$here/sysusers.d/edgetwin.conf" "$sysusers_file" 0644 && changed=1
    put "$here/tmpfiles.d/edgetwin.conf" "$tmpfiles_file" 0644 && changed=1
    system systemd-sysusers "$sysusers_file"
    system systemd-tmpfiles --create "$tmpfiles_file"
    if [ -n "$destdir" ]; then
        mkdir -p "$etc" "$destdir/var/lib/edgetwin" "$cache/numba"
    fi

    # 2. The virtual environment and the package.
    if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "the venv's Python no longer runs (OS upgrade?); recreating $venv"
        rm -rf "$venv"
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
        say "created $venv"
        changed=1
    fi
    local want have=
    want=$(fingerprint "$source")
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$want" != "$have" ] || [ ! -x "$venv/bin/edgetwin" ]; then
        local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
        local wheel=$source
        if [ -d "$source" ]; then
            wheel_dir=$(mktemp -d)
            trap 'rm -rf "$wheel_dir"' EXIT
            "${pip[@]}" wheel --no-deps --wheel-dir "$wheel_dir" \
                ${pip_args[@]+"${pip_args[@]}"} "$source"
            wheel=$(echo "$wheel_dir"/edgetwin-*.whl)
        fi
        # The first pass brings the dependencies; pip skips a wheel whose version is already
        # installed, so the second pass replaces edgetwin itself even at the same version.
        "${pip[@]}" install ${pip_args[@]+"${pip_args[@]}"} "$wheel"
        "${pip[@]}" install --force-reinstall --no-deps ${pip_args[@]+"${pip_args[@]}"} "$wheel"
        printf '%s\n' "$want" >"$stamp"
        say "installed edgetwin from $source into $venv"
        changed=1
    else
        say "unchanged $venv (same source)"
    fi
    if [ -f "$here/../docs/deploy.md" ]; then
        put "$here/../docs/deploy.md" "$doc_file" 0644 || true
    fi

    # 3. udev rules and the unit.
    put "$here/udev/99-edgetwin-serial.rules" "$udev_file" 0644 && rules_changed=1
    put "$here/edgetwin.service" "$unit_file" 0644 && units_changed=1
    if [ "$rules_changed" = 1 ]; then
        changed=1
        system udevadm control --reload
        system udevadm trigger --action=change --subsystem-match=tty --subsystem-match=i2c-dev
    fi
    if [ "$units_changed" = 1 ]; then
        changed=1
        system systemctl daemon-reload
    fi

    # 4. The configuration: never overwrite the technician's.
    if [ -e "$config" ]; then
        say "kept $config"
    else
        mkdir -p "$etc"
        install -m 0640 "$here/edgetwin.example.toml" "$config"
        say "installed $config (the example: edit it for this site)"
        changed=1
    fi
    system chgrp edgetwin "$config"

    # 5. Prove the service user can read the config and load the kernels.
    as_service_user "$venv/bin/edgetwin" check --config "$config" ||
        die "fix the problems above in $config, then run $0 again"
    as_service_user env NUMBA_CACHE_DIR="$cache/numba" "$venv/bin/edgetwin" warmup

    # 6. Enable; restart a running service only when something changed.
    if [ "$enable" = 1 ]; then
        system systemctl enable "$unit"
        if [ "$changed" = 1 ]; then
            system systemctl try-restart "$unit"
        fi
        [ -n "$destdir" ] || say "enabled $unit; start it with: sudo systemctl start $unit"
    else
        say "not enabled (--no-enable); enable it with: sudo systemctl enable --now $unit"
    fi
}

if [ "$uninstall" = 1 ]; then
    [ -n "$destdir" ] || [ "$(id -u)" = 0 ] || die "run as root (sudo $0 --uninstall)"
    do_uninstall
else
    do_install
fi
