"""The operators' commands of ``router-service``: explain, check-config, backtest, replays."""
