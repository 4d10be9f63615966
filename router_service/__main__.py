from router_service.cli import main

main()
