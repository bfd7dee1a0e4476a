# Sealed credentials on the device: the data-partition store (store.py), the TPM policy flows
# (flows.py), release at boot with a diagnosis on refusal (release.py, diagnose.py), the
# anti-rollback bit field (rollback.py) and the boot hook the phone console calls (hook.py).
