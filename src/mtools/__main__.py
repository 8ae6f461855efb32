from mtools.cli import main

main()
