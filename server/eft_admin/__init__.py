"""``eft-admin``: list, revoke, free, remove and export what an eft server stores."""
