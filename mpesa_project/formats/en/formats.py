"""How the admin writes dates and times: to the second, with the zone's name. TIME_ZONE is
Africa/Nairobi, so every time the admin shows reads ``2025-11-05 13:00:30 EAT`` (Django's
en-us default, ``Nov. 5, 2025, 1 p.m.``, drops the seconds an accountant matches on)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
