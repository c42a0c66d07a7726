from flameqa.cli import main

main()
