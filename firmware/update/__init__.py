# Firmware updates on the device: A/B slots with MCUboot's test/confirm/revert semantics
# (slots.py) and the checks an uploaded bundle passes before and after it is written (upload.py).
