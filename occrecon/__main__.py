from occrecon.cli.main import main

main()
