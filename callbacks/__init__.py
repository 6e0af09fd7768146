"""The callback inbox: store Daraja's requests raw first, then process, re-drive and replay."""
