/* bcryptprimitives.dll for Wine 8.0, which lacks ProcessPrng (added in later
 * Wine). Rust's std (1.78 and later) imports it on Windows, so without this a
 * Rust program does not start. Built and installed by scripts/wine/prefix. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
