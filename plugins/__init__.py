"""The plugins that ship with vcd (installed as the ``vcd_plugins`` package).

Each module is a plugin written exactly as a third party would write theirs;
``[plugins] enabled`` in config.toml picks which of them load.
"""
