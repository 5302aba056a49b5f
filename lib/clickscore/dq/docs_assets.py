"""Data Docs that render without internet access.

GX's Data Docs pages load jQuery, Bootstrap and bootstrap-table from public CDNs; on a cluster
or laptop without them, the index shows no suites at all. Setup fetches those exact files
once from the npm registry (checked against the registry's sha512), into the virtualenv;
after each Data Docs build `localize_pages` copies them next to the site and points the
pages at the copies. Charts (vega) stay on their CDN: pages read fine without them.

    python -m clickscore.dq.docs_assets --fetch
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import logging
import os
import re
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

REGISTRY = "https://registry.npmjs.org"
# npm package@version -> sha512 of its tarball, as the registry publishes it
PACKAGES = {
    "jquery@3.7.1":
        "m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
    "popper.js@1.12.9":
        "s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
    "bootstrap@4.3.1":
        "rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
    "bootstrap-table@1.19.1":
        "WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
    "bootstrap-datepicker@1.9.0":
        "9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
    "@fortawesome/fontawesome-free@6.6.0":
        "60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
}
_FA = "@fortawesome/fontawesome-free@6.6.0"
# files a page does not name but loads through another file (the icon fonts of the CSS)
EXTRA_FILES = {_FA: [f"webfonts/fa-{font}.{ext}" for font in ("brands-400", "regular-400",
                                                               "solid-900", "v4compatibility")
                     for ext in ("woff2", "ttf")]}
_BT = "bootstrap-table@1.19.1"
# CDN address in GX's templates -> (package, file inside it)
ASSETS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        ("popper.js@1.12.9", "dist/umd/popper.min.js"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        ("bootstrap@4.3.1", "dist/js/bootstrap.min.js"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        ("bootstrap@4.3.1", "dist/css/bootstrap.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        (_BT, "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        (_BT, "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js":
        (_BT, "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css":
        (_BT, "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js":
        ("bootstrap-datepicker@1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css":
        ("bootstrap-datepicker@1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        (_FA, "css/all.min.css"),
}
_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https://[^"]+)"[^>]*>')


def assets_dir() -> Path:
    """Where setup keeps the fetched files: inside the virtualenv (or $CLICKSCORE_ASSETS)."""
    return Path(os.environ.get("CLICKSCORE_ASSETS", Path(sys.prefix) / "share" / "clickscore"
                               / "data-docs-assets"))


def fetch(target: Path | None = None) -> Path:
    """Download the pinned packages once and keep the files the pages use."""
    target = target or assets_dir()
    for package, integrity in PACKAGES.items():
        wanted = {path for pkg, path in ASSETS.values() if pkg == package}
        wanted |= set(EXTRA_FILES.get(package, []))
        if all((target / package / path).exists() for path in wanted):
            continue
        name, version = package.rsplit("@", 1)
        url = f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - pinned https
            data = response.read()
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity:
            raise RuntimeError(f"{url}: sha512 {digest} does not match the pinned {integrity}")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for path in wanted:
                member = archive.extractfile(f"package/{path}")
                if member is None:
                    raise RuntimeError(f"{url} has no {path}")
                out = target / package / path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(member.read())
        log.info("fetched %s into %s", package, target)
    return target


def localize_pages(site_dir: Path, since: float = 0.0) -> int:
    """Point the Data Docs pages changed since `since` (a timestamp) at local copies of the
    CDN files; returns how many pages changed. Without fetched assets, pages are left as
    they are (they still work where the CDNs are reachable)."""
    source = assets_dir()
    if not all((source / pkg / path).exists() for pkg, path in ASSETS.values()):
        log.warning("Data Docs keep their CDN links: run `python -m clickscore.dq.docs_assets "
                    "--fetch` to make them render offline")
        return 0
    vendor = site_dir / "static" / "vendor"
    if not vendor.exists():
        # contents only: modes (the venv's files are world-readable) follow this process's
        # umask, as every file of the data root does
        for path in sorted(source.rglob("*")):
            copy = vendor / path.relative_to(source)
            if path.is_dir():
                copy.mkdir(parents=True, exist_ok=True)
            else:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
    changed = 0
    for page in site_dir.rglob("*.html"):
        if page.stat().st_mtime < since:
            continue
        html = page.read_text(encoding="utf-8")
        to_root = os.path.relpath(site_dir, page.parent)

        def local(match: re.Match[str], to_root: str = to_root) -> str:
            found = ASSETS.get(match.group(2))
            if found is None:
                return match.group(0)
            package, path = found
            href = f"{to_root}/static/vendor/{package}/{path}"
            if match.group(1) == "script":
                return f'<script src="{href}">'
            return f'<link rel="stylesheet" href="{href}">'

        localized = _TAG.sub(local, html)
        if localized != html:
            page.write_text(localized, encoding="utf-8")
            changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch Data Docs' front-end files once.")
    parser.add_argument("--fetch", action="store_true", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.fetch:
        print(f"Data Docs assets in {fetch()}")


if __name__ == "__main__":
    main()
