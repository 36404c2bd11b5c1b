import hashlib

import django.db.models.deletion
from django.db import migrations, models


def fill_key_hashes(apps, schema_editor):
    """Requests made before this version get their key's hash: the same key sent again finds them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    requests = apps.get_model("enrollment", "EnrollmentRequest").objects
    for pk, csr_pem in requests.filter(public_key_sha256="").values_list("pk", "csr_pem").iterator():
        try:
            key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
        except ValueError:
            continue
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        requests.filter(pk=pk).update(public_key_sha256=hashlib.sha256(der).hexdigest())


class Migration(migrations.Migration):
    dependencies = [
        ("certificates", "0007_crl_entry"),
        ("enrollment", "0005_event_mac"),
    ]

    operations = [
        migrations.AddField(
            model_name="enrollmentrequest",
            name="public_key_sha256",
            field=models.CharField(blank=True, db_index=True, max_length=64),
        ),
        migrations.AddField(
            model_name="enrollmentrequest",
            name="replaces",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="certificates.certificate",
            ),
        ),
        migrations.RunPython(fill_key_hashes, migrations.RunPython.noop),
    ]
