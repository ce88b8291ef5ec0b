"""A bot with no web server: it polls and logs (a worker)."""

import time

import humanize


def main() -> None:
    started = time.monotonic()
    print("bot.py: worker started", flush=True)
    while True:
        time.sleep(30)
        print(f"bot.py: up for {humanize.naturaldelta(time.monotonic() - started)}", flush=True)


if __name__ == "__main__":
    main()
