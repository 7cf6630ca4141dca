// Generated once with PyCryptodome (RSA.generate(1024, e=17)) for the interoperability
// tests: a key exactly as the Python client writes it, and an OAEP ciphertext of the AES
// key 0x00..0x1F made with PKCS1_OAEP.new(public_key).encrypt(). Test data only.
#pragma once

namespace fixtures {

// PKCS#8 DER, Base64 wrapped at 64 characters.
inline constexpr const char* kPythonKeyPkcs8Base64 =
    "MIICcwIBADANBgkqhkiG9w0BAQEFAASCAl0wggJZAgEAAoGBAMlQ02ODVMfVrF1s\n"
    "z+iwnyjvRCSvnsgyjBweg9pc2y1xQtZiO0ihBiEklvHriN3KRfTP5UzTpnU3JkFQ\n"
    "C6E3+hKKY7d7/ME2nnJnJ1nbsiwsAQ0TDQG2H1MZL6fuVPq91orrqxbb1NJ3wqNi\n"
    "SZ+2b/dB3dtkMVKne/Ulqkjoz+4zAgERAoGAEcNd8jE8L8AHreP0Oi2zsMnRTof3\n"
    "bAR1xj7thDVeoiCU9MxupIatt6FYnOATmxlghorQd7hSc8EZ9rQ9Qu5Z1E2M27QP\n"
    "YzlMTTWeAxGHVCIP2KNLTkXj/JdzOng/EpYttUckxAgX2ZdU3tqbxTYJPe+7U/rM\n"
    "tjLvhusPAjYgqfECQQDd4DyPvEDXSdX6zSJyxBCS/warVP1t8uhzqe4qkI92yvDb\n"
    "XBErYA7pPLn7pcNKqcPfG1fM+OHeIwFKGp0G8rsBAkEA6EcWSOdxK0kxYgYUokW3\n"
    "bE5vLQ032r878RZ4cPmYoQWTlK5X/2Z22262Y752sgggGyIhJ321Mr5QHjroJxWt\n"
    "MwJAaGmF6UmH7NdzwVF5n2tTF/+KqvrRnScD+jHZfXE0dCNEKv4mMoeOi+BXhXsu\n"
    "ublNHbKDq8BqSmrTbiqkP4FI8QJAKP18Zzfmy2dE8y4/4Gan5e+5RC+CU8dk7k9C\n"
    "bkop/kxHOFsAeF1gRNdNXOVgPYj2m2BgNCU+GAN3jN04BuW1JwJAGh391f3IanfD\n"
    "8mRm5RS7zMUKa7yL/27Dh++FgtDT5Jxd+umusaTp6U5DtGhUMNSVnwDd15MqDFXX\n"
    "ZFgj9oj8Yg==\n";

// The same key as PKCS#1 RSAPrivateKey DER, Base64 wrapped at 76 characters.
inline constexpr const char* kPythonKeyPkcs1Base64 =
    "MIICWQIBAAKBgQDJUNNjg1TH1axdbM/osJ8o70Qkr57IMowcHoPaXNstcULWYjtIoQYhJJbx64jd\n"
    "ykX0z+VM06Z1NyZBUAuhN/oSimO3e/zBNp5yZydZ27IsLAENEw0Bth9TGS+n7lT6vdaK66sW29TS\n"
    "d8KjYkmftm/3Qd3bZDFSp3v1JapI6M/uMwIBEQKBgBHDXfIxPC/AB63j9Dots7DJ0U6H92wEdcY+\n"
    "7YQ1XqIglPTMbqSGrbehWJzgE5sZYIaK0He4UnPBGfa0PULuWdRNjNu0D2M5TE01ngMRh1QiD9ij\n"
    "S05F4/yXczp4PxKWLbVHJMQIF9mXVN7am8U2CT3vu1P6zLYy74brDwI2IKnxAkEA3eA8j7xA10nV\n"
    "+s0icsQQkv8Gq1T9bfLoc6nuKpCPdsrw21wRK2AO6Ty5+6XDSqnD3xtXzPjh3iMBShqdBvK7AQJB\n"
    "AOhHFkjncStJMWIGFKJFt2xOby0NN9q/O/EWeHD5mKEFk5SuV/9mdttutmO+drIIIBsiISd9tTK+\n"
    "UB466CcVrTMCQGhphelJh+zXc8FReZ9rUxf/iqr60Z0nA/ox2X1xNHQjRCr+JjKHjovgV4V7Lrm5\n"
    "TR2yg6vAakpq024qpD+BSPECQCj9fGc35stnRPMuP+Bmp+XvuUQvglPHZO5PQm5KKf5MRzhbAHhd\n"
    "YETXTVzlYD2I9ptgYDQlPhgDd4zdOAbltScCQBod/dX9yGp3w/JkZuUUu8zFCmu8i/9uw4fvhYLQ\n"
    "0+ScXfrprrGk6elOQ7RoVDDUlZ8A3deTKgxV12RYI/aI/GI=\n";

// Its X.509 SubjectPublicKeyInfo DER (160 bytes), hex.
inline constexpr const char* kPythonPublicKeyHex =
    "30819d300d06092a864886f70d010101050003818b0030818702818100c950d3638354c7d5ac5d6ccfe8b09f28ef4424af9ec8328c1c1e83da5cdb2d7142d6623b48a106212496f1eb88ddca45f4cfe54cd3a675372641500ba137fa128a63b77bfcc1369e72672759dbb22c2c010d130d01b61f53192fa7ee54fabdd68aebab16dbd4d277c2a362499fb66ff741dddb643152a77bf525aa48e8cfee33020111";

// PKCS1_OAEP (SHA-1) encryption of bytes 0x00..0x1F under that public key, hex.
inline constexpr const char* kPythonOaepOfCountingKeyHex =
    "c71b12319f7a68803947be4baa98bd6f52e60185e0ac58c415ae8effbe5cfb778eccd0028287c9e3937ab49469dfd07c76349752265787b4d0c8499c2f565f13b60614bc07455644e92e30ac52b2a632f62ac6f2fa35f7ba9b7f575a4f43e94fc5384dcd9b6c6b53853b095d203bfe2215162da90a9b96b58d5dc9df3c8e885a";

}  // namespace fixtures
