"""``voice-locust [LOCUST OPTIONS] [USER CLASSES]``: Locust with the built-in scenarios, from an install.

The built-in users (:mod:`voiceharness.locust.scenarios`) are a locustfile of their own; this
runs Locust on that file, in this process, so an installed harness needs no checkout::

    voice-locust --host ws://127.0.0.1:7090 --headless -u 5 -r 5 -t 30s --csv results/run BasicUser
    python -m voiceharness.locust --host ws://127.0.0.1:7090      (the same; web UI on :8089)

Every Locust option and the harness's own (``voice-options`` lists them) work as with
``locust -f locustfiles/voice.py`` in the checkout. A locustfile of your own is run by Locust
itself: ``locust -f my_locustfile.py`` (the README's "Write your own scenario").
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

_SCENARIOS_MODULE = "voiceharness.locust.scenarios"


def scenarios_locustfile() -> str:
    """The installed path of the built-in scenarios' locustfile (found without importing it, so
    that Locust imports it once, as the locustfile)."""
    return importlib.util.find_spec(_SCENARIOS_MODULE).origin


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-f", "--locustfile") or arg.startswith("--locustfile=") or
           (arg.startswith("-f") and not arg.startswith("--")) for arg in args):
        print("voice-locust: error: voice-locust runs the built-in scenarios and takes no -f; "
              "run a locustfile of your own with `locust -f FILE ...`", file=sys.stderr)
        return 2
    from locust.main import main as locust_main

    # Locust reads its command line from sys.argv, and ends the process itself with its exit code.
    sys.argv = ["voice-locust", "-f", scenarios_locustfile(), *args]
    locust_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
