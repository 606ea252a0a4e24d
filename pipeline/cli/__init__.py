"""The `facepipe` command line: Rekognition operations through the AWS CLI v1 driver, and own commands.

The installed botocore is imported here, before any ``awscli`` module: recent awscli releases
(1.46.3 here) carry their own, older copy of botocore and, once imported, make ``import botocore``
load that copy (``awscli.TopLevelImportAliasFinder``) unless botocore is already loaded. Importing
it first keeps one botocore in the process, the installed one, for the driver, the service's model
and ``facepipe --version`` alike.
"""

import botocore  # noqa: F401  (must precede every awscli import; see above)
