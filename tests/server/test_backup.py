"""What a backup carries of the settings, and what `restore` says of them (the whole backup and restore of
real servers under load: tests/agent/test_backup.py)."""

from __future__ import annotations

from autoenroll.server import backup
from autoenroll.server.config import load_config

LOST = {
    "AUTOENROLL_DATA_DIR": "/srv/lost",
    "AUTOENROLL_PUBLICATION_URL": "http://pki.example.com",
    "AUTOENROLL_PUBLIC_URL": "https://ccm.example.com",
    "AUTOENROLL_SMTP_PASSWORD": "mail-secret",
    "AUTOENROLL_CA_PASSPHRASE": "never-carried",
    "AUTOENROLL_CERTIFICATE_DAYS": "200",
}


def test_the_settings_given_are_carried_not_the_defaults_nor_the_passphrase():
    carried = backup._carried_settings(load_config(LOST))
    assert carried == {
        "data_dir": "/srv/lost",
        "publication_url": "http://pki.example.com",
        "public_url": "https://ccm.example.com",
        "smtp_password": "mail-secret",
        "certificate_days": 200,
    }


def test_restore_names_what_differs_secrets_by_name_only():
    carried = backup._carried_settings(load_config(LOST))
    here = load_config({"AUTOENROLL_DATA_DIR": "/srv/new", "AUTOENROLL_PUBLIC_URL": "https://ccm.example.com"})
    differences = backup._differences(here, carried)
    assert differences == [
        "certificate_days: 200 in the backup, 365 here",
        "publication_url: 'http://pki.example.com' in the backup, 'http://localhost:8080' here: the certificates "
        "and CRLs already issued name the backup's URL: serve it there too",
        "smtp_password (a secret)",
    ]
    assert not backup._differences(load_config(LOST), carried)
