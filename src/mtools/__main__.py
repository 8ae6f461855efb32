from mtools import main

main()
