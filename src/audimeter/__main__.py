from audimeter.cli import main

main()
