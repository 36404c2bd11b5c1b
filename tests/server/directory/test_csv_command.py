"""`adservers import`: the CSV of the AD Server page from the shell; all or nothing unless told to skip."""

import pytest
from django.core.management import CommandError, call_command

from autoenroll.server.directory.models import ADServer
from autoenroll.testbed import samba

pytestmark = pytest.mark.django_db

HEADER = "Domain,AD Server Address,AD Server Port,Set as Default,Users Base DN,Login User DN,Login Password,Use SSL\n"
GOOD = 'test.com,10.0.0.1,0,yes,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",Secret-1,yes\n'
GOOD2 = 'test.com,10.0.0.2,636,no,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",Secret-2,yes\n'
BAD = 'test.com,10.0.0.3,99999,no,,"CN=ccm,CN=Users,DC=test,DC=com",Secret-3,yes\n'


def test_a_bad_row_imports_nothing_and_is_named(acme, tmp_path, capsys):
    csv = tmp_path / "servers.csv"
    csv.write_text(HEADER + GOOD + BAD + GOOD2)
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("adservers", "import", str(csv), "--customer", "acme")
    assert "line 3" in capsys.readouterr().err
    assert not ADServer.objects.exists()


def test_skip_invalid_imports_the_good_rows(acme, tmp_path, capsys):
    csv = tmp_path / "servers.csv"
    csv.write_text(HEADER + GOOD + BAD + GOOD2)
    call_command("adservers", "import", str(csv), "--customer", "acme", "--skip-invalid")
    assert "2 AD servers imported, 1 invalid rows skipped" in capsys.readouterr().out
    assert ADServer.objects.get(address="10.0.0.1").login_password == "Secret-1"
    assert ADServer.objects.filter(customer=acme, is_default=True).count() == 1


def test_the_guides_column_names_and_the_tls_columns_are_read(acme, tmp_path, samba_ad):
    """Figure 2.13's list names ("AD Server", "Port") and its informational columns, in any order, with
    the DC's CA (a quoted PEM cell) and TLS server name: an imported LDAPS server passes Verify."""
    import csv as csvmodule
    import io

    from autoenroll.server.directory.ldap import DirectoryClient

    out = io.StringIO()
    writer = csvmodule.writer(out)
    writer.writerow(
        [
            "AD Server",
            "Domain",
            "Port",
            "Use SSL",
            "Organization/Department",
            "Setup By Comodo",
            "Users Base DN",
            "Login User DN",
            "Login Password",
            "DC CA Certificate",
            "TLS Server Name",
        ]
    )
    writer.writerow([samba_ad.ip, "test.com", "636", "Yes", "System", "No", samba.USERS_DN,
                     samba.SERVICE_ACCOUNT_DN, samba.SERVICE_ACCOUNT_PASSWORD, samba_ad.tls_ca.read_text(),
                     samba.DC_FQDN])  # fmt: skip
    path = tmp_path / "servers.csv"
    path.write_text(out.getvalue())
    call_command("adservers", "import", str(path), "--customer", "acme")
    server = ADServer.objects.get(address=samba_ad.ip)
    assert (server.port, server.use_ssl, server.tls_server_name) == (636, True, samba.DC_FQDN)
    client = DirectoryClient(server.ldap_settings())
    try:
        assert client.verify().dc_certificate is not None
    finally:
        client.close()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Domain,AD Server,Users Base DN,Login User DN\n", "lacks the column(s): Login Password"),
        (HEADER.replace("Use SSL", "Use SSLL"), "Unknown column 'Use SSLL'"),
        (HEADER.rstrip("\n") + ",Port\n", "The column AD Server Port appears twice"),
    ],
)
def test_a_header_that_cannot_be_read_is_named(acme, tmp_path, header, message):
    path = tmp_path / "servers.csv"
    path.write_text(header + GOOD)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("adservers", "import", str(path), "--customer", "acme")


def test_a_ca_cell_that_is_not_pem_is_refused(acme, tmp_path):
    path = tmp_path / "servers.csv"
    path.write_text(HEADER.rstrip("\n") + ",DC CA Certificate\n" + GOOD.rstrip("\n") + ",not a certificate\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("adservers", "import", str(path), "--customer", "acme")
    assert not ADServer.objects.exists()
