from glitchrun.cli import main

main()
