from reelforge.cli.main import main

main()
