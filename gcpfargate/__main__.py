from gcpfargate.cli import main

main()
