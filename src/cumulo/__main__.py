from cumulo.cli import main

main()
