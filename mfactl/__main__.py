from mfactl.cli.app import main

main()
