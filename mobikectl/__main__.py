from mobikectl.cli import main

main()
