from audimeter.cli import main

if __name__ == "__main__":  # not when a tool imports the module to inspect it
    main()
