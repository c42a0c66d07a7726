"""``python -m flameqa.cli`` = ``flameqa`` (the same as ``python -m flameqa``)."""

from flameqa.cli import main

main()
