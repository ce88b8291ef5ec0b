import time

from rich.console import Console


def main() -> None:
    console = Console()
    console.print("Hello from uv-app!")
    # A worker: no port, no HTTP; it stays up doing its job.
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
