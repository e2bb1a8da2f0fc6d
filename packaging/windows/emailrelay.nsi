; emailrelay.nsi -- the Windows installer of E-MailRelay (emailrelay-rs).
;
; Built on Linux by scripts/windows-release with Debian's makensis:
;     makensis -DVERSION=<version> -DSTAGE=<folder of the release zip> \
;         -DOUTFILE=<setup.exe> packaging/windows/emailrelay.nsi
;
; It does what E-MailRelay 2.6.1's setup program does on Windows (its
; doc/windows.md): the program folder (%ProgramFiles%\E-MailRelay), the data
; folder (%ProgramData%\E-MailRelay) with the spool, emailrelay.cfg and
; emailrelay.auth from the templates (kept if they are there already),
; emailrelay-start.bat written as 2.6.1 writes it, emailrelay-service.cfg
; beside the service wrapper pointing at the data folder, the Event Log
; source "emailrelay" registered, Start-menu entries, and the service
; installed with "emailrelay-service --install" and started.
;
; Silent use, for administrators (in an administrator's command prompt):
;     emailrelay-<version>-windows-x86_64-setup.exe /S [/DATA=<data folder>]
;         [/NOSERVICE] [/NOMENU] [/D=<program folder>]
; /D= must come last and takes no quotes, even with spaces (NSIS's rule);
; /DATA= takes quotes. The exit code is 0 when all went well, 2 when the
; service could not be installed or started (the files are in place) or a
; folder's name cannot be written in the batch file (nothing installed).
; A reinstall or upgrade keeps the data folder it used before.
;
; The uninstaller, "<program folder>\uninstall.exe" (/S for silent), stops
; and removes the service and removes the program folder; it removes the
; data folder only when the spool is empty, and otherwise keeps all of it
; and says so (emailrelay-uninstall.txt in the data folder, and on screen).
; A silent uninstaller returns at once and finishes in the background (NSIS
; runs it from a temporary copy).

!ifndef VERSION
  !error "give -DVERSION=, -DSTAGE= and -DOUTFILE= (scripts/windows-release does)"
!endif
!ifndef STAGE
  !error "give -DSTAGE=, the folder of the release zip's files"
!endif
!ifndef OUTFILE
  !error "give -DOUTFILE=, the installer to make"
!endif

Unicode true
Target amd64-unicode
SetCompressor /SOLID lzma

!include LogicLib.nsh
!include FileFunc.nsh
!include WordFunc.nsh
!include Sections.nsh

!define PRODUCT "E-MailRelay"
!define SERVICE "emailrelay"
!define REGKEY "Software\E-MailRelay"
!define UNINSTKEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\E-MailRelay"
!define EVENTLOGKEY "SYSTEM\CurrentControlSet\Services\EventLog\Application"
!define SERVICEKEY "SYSTEM\CurrentControlSet\Services\${SERVICE}"
; The folders the templates name; replaced by the chosen ones.
!define TEMPLATE_DATA "C:\ProgramData\E-MailRelay"
!define TEMPLATE_PROGRAM "C:\Program Files\E-MailRelay"
; Code pages: the relay and the service wrapper read their .cfg files as
; UTF-8; cmd reads a batch file in the OEM code page (2.6.1 writes it so).
!define CP_UTF8 65001
!define CP_OEM 1

Name "${PRODUCT}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\E-MailRelay"
InstallDirRegKey HKLM "${REGKEY}" "InstallDir"
RequestExecutionLevel admin
ShowInstDetails show
ShowUninstDetails show
BrandingText "${PRODUCT} ${VERSION} (emailrelay-rs)"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${PRODUCT}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${PRODUCT} ${VERSION} setup"
VIAddVersionKey "LegalCopyright" "GPL-3.0-or-later"

; The data folder: configuration, secrets, start batch file, spool, logs.
Var DataDir
; The command line's /DATA=, /NOSERVICE and /NOMENU.
Var ArgData
Var ArgNoService
Var ArgNoMenu

Page components
Page directory
PageEx directory
  DirVar $DataDir
  DirText "The data folder holds emailrelay.cfg, emailrelay.auth, the spool (mail waiting to be sent on) and the log files. A reinstall keeps what is there." "Data folder"
PageExEnd
Page instfiles

UninstPage uninstConfirm
UninstPage instfiles

Section "E-MailRelay (required)" SecProgram
  SectionIn RO
  Call CheckFolderNames
  Call StopService
  Call WaitForPrograms

  SetOutPath "$INSTDIR"
  File "${STAGE}/emailrelay.exe"
  File "${STAGE}/emailrelay-submit.exe"
  File "${STAGE}/emailrelay-passwd.exe"
  File "${STAGE}/emailrelay-service.exe"
  File "${STAGE}/readme-windows.txt"
  SetOutPath "$INSTDIR\examples"
  File "${STAGE}/examples/*.js"

  ; The data folder, opened for the installing user to edit (as 2.6.1 does),
  ; with what is there already kept.
  CreateDirectory "$DataDir\spool"
  Call GrantUserWrite
  Call WriteConfig
  SetOverwrite off
  File "/oname=$DataDir\emailrelay.auth" "${STAGE}/emailrelay.auth"
  SetOverwrite on
  Call ProtectSecrets
  Call WriteStartBatch
  Call WriteServiceConfig

  ; The Event Log source, registered here because the relay, when an
  ; ordinary user runs it, may not write this key (the values as the relay
  ; and 2.6.1 write them at start).
  WriteRegStr HKLM "${EVENTLOGKEY}\emailrelay" "EventMessageFile" "$INSTDIR\emailrelay.exe"
  WriteRegStr HKLM "${EVENTLOGKEY}\emailrelay" "CategoryMessageFile" "$INSTDIR\emailrelay.exe"
  WriteRegDWORD HKLM "${EVENTLOGKEY}\emailrelay" "CategoryCount" 1
  WriteRegDWORD HKLM "${EVENTLOGKEY}\emailrelay" "TypesSupported" 7

  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKLM "${REGKEY}" "InstallDir" "$INSTDIR"
  WriteRegStr HKLM "${REGKEY}" "DataDir" "$DataDir"
  WriteRegStr HKLM "${REGKEY}" "Version" "${VERSION}"
  WriteRegStr HKLM "${UNINSTKEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKLM "${UNINSTKEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTKEY}" "Publisher" "emailrelay-rs"
  WriteRegStr HKLM "${UNINSTKEY}" "DisplayIcon" "$INSTDIR\emailrelay.exe"
  WriteRegStr HKLM "${UNINSTKEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTKEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTKEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTKEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTKEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKLM "${UNINSTKEY}" "EstimatedSize" $0
SectionEnd

Section "Start menu entries" SecMenu
  SetShellVarContext all
  CreateDirectory "$SMPROGRAMS\E-MailRelay"
  ; Shortcuts start in the folder SetOutPath names.
  SetOutPath "$DataDir"
  CreateShortcut "$SMPROGRAMS\E-MailRelay\E-MailRelay.lnk" "$DataDir\emailrelay-start.bat" "" "$INSTDIR\emailrelay.exe" 0
  CreateShortcut "$SMPROGRAMS\E-MailRelay\Edit emailrelay.cfg.lnk" "$WINDIR\notepad.exe" '"$DataDir\emailrelay.cfg"'
  CreateShortcut "$SMPROGRAMS\E-MailRelay\Data folder.lnk" "$DataDir"
  SetOutPath "$INSTDIR"
  CreateShortcut "$SMPROGRAMS\E-MailRelay\Read me.lnk" "$INSTDIR\readme-windows.txt"
  CreateShortcut "$SMPROGRAMS\E-MailRelay\Uninstall E-MailRelay.lnk" "$INSTDIR\uninstall.exe"
SectionEnd

Section "Windows service (starts with Windows)" SecService
  DetailPrint "Installing the service ${SERVICE}"
  nsExec::ExecToLog '"$INSTDIR\emailrelay-service.exe" --install'
  Pop $0
  ${If} $0 != 0
    Push "emailrelay-service --install failed ($0)"
    Call ServiceFailed
    Return
  ${EndIf}
  DetailPrint "Starting the service ${SERVICE}"
  nsExec::ExecToLog '"$SYSDIR\net.exe" start ${SERVICE}'
  Pop $0
  ${If} $0 != 0
    Push "net start ${SERVICE} failed ($0): see the log file in $DataDir and the Event Log"
    Call ServiceFailed
  ${EndIf}
SectionEnd

; Without the service section, a service left by an earlier install goes
; (as 2.6.1's setup does when "start on boot" is unticked).
Section "-RemoveUnwantedService"
  ${IfNot} ${SectionIsSelected} ${SecService}
    ReadRegStr $0 HKLM "${SERVICEKEY}" "ImagePath"
    ${If} $0 != ""
      DetailPrint "Removing the service ${SERVICE}"
      nsExec::ExecToLog '"$INSTDIR\emailrelay-service.exe" --remove'
      Pop $0
    ${EndIf}
  ${EndIf}
SectionEnd

; Reads the command line's own options as Windows splits it into words
; (CommandLineToArgvW), so that /DATA="C:\My data" from cmd and
; "/DATA=C:\My data" from PowerShell both work. NSIS reads /S and /D= itself.
!macro ParseArgs un
Function ${un}ParseArgs
  System::Call 'kernel32::GetCommandLineW() p .r0'
  System::Call 'shell32::CommandLineToArgvW(p r0, *i 0 r1) p .r2'
  ${If} $2 == 0
    Return
  ${EndIf}
  StrCpy $3 1
  ${DoWhile} $3 < $1
    IntPtrOp $4 $3 * 8
    IntPtrOp $4 $2 + $4
    System::Call '*$4(p .r5)'
    System::Call 'kernel32::lstrcpynW(w .r6, p r5, i ${NSIS_MAX_STRLEN})'
    StrCpy $7 $6 6
    ${If} $7 == "/DATA="
      StrCpy $ArgData $6 "" 6
    ${ElseIf} $6 == "/NOSERVICE"
      StrCpy $ArgNoService 1
    ${ElseIf} $6 == "/NOMENU"
      StrCpy $ArgNoMenu 1
    ${EndIf}
    IntOp $3 $3 + 1
  ${Loop}
  System::Call 'kernel32::LocalFree(p r2)'
FunctionEnd
!macroend
!insertmacro ParseArgs ""
!insertmacro ParseArgs "un."

Function .onInit
  SetShellVarContext all
  Call ParseArgs
  ; A reinstall keeps the data folder it used before.
  ReadRegStr $DataDir HKLM "${REGKEY}" "DataDir"
  ${If} $DataDir == ""
    ; $APPDATA for all users is %ProgramData%.
    StrCpy $DataDir "$APPDATA\E-MailRelay"
  ${EndIf}
  ${If} $ArgData != ""
    StrCpy $DataDir $ArgData
  ${EndIf}
  ${If} $ArgNoService == 1
    !insertmacro UnselectSection ${SecService}
  ${EndIf}
  ${If} $ArgNoMenu == 1
    !insertmacro UnselectSection ${SecMenu}
  ${EndIf}
FunctionEnd

; emailrelay-start.bat is read by cmd in the OEM code page: a folder name
; with a character outside it cannot be written there. Such folders are
; refused before anything is installed (2.6.1's setup refuses them too).
Function CheckFolderNames
  ${ForEach} $0 1 2 + 1
    ${If} $0 == 1
      StrCpy $1 "$INSTDIR"
    ${Else}
      StrCpy $1 "$DataDir"
    ${EndIf}
    StrCpy $2 0
    System::Call 'kernel32::WideCharToMultiByte(i ${CP_OEM}, i 0, w r1, i -1, p 0, i 0, p 0, *i 0 r2) i .r3'
    ${If} $2 != 0
      StrCpy $1 "The folder $1 has a character that emailrelay-start.bat cannot hold (it is not in the OEM code page): choose another folder."
      DetailPrint "$1"
      MessageBox MB_OK|MB_ICONSTOP "$1" /SD IDOK
      SetErrorLevel 2
      Abort
    ${EndIf}
  ${Next}
FunctionEnd

; Reports a service step that failed: on screen, in the details, and in
; the exit code (2); the files stay installed.
Function ServiceFailed
  Exch $0
  DetailPrint "$0"
  SetErrorLevel 2
  MessageBox MB_OK|MB_ICONEXCLAMATION "The E-MailRelay service did not start: $0." /SD IDOK
  Pop $0
FunctionEnd

; Stops the service before its programs are replaced.
Function StopService
  ReadRegStr $0 HKLM "${SERVICEKEY}" "ImagePath"
  ${If} $0 != ""
    DetailPrint "Stopping the service ${SERVICE}"
    nsExec::ExecToLog '"$SYSDIR\net.exe" stop ${SERVICE}'
    Pop $0
  ${EndIf}
FunctionEnd

; Waits, up to 20 s, until emailrelay.exe may be replaced or removed (the
; relay of a stopped service can take a moment to exit).
!macro WaitForPrograms un
Function ${un}WaitForPrograms
  ${IfNot} ${FileExists} "$INSTDIR\emailrelay.exe"
    Return
  ${EndIf}
  StrCpy $1 0
  ${Do}
    ClearErrors
    FileOpen $0 "$INSTDIR\emailrelay.exe" a
    ${IfNot} ${Errors}
      FileClose $0
      Return
    ${EndIf}
    IntOp $1 $1 + 1
    ${If} $1 >= 100
      DetailPrint "$INSTDIR\emailrelay.exe is still in use: is the relay running outside the service?"
      Return
    ${EndIf}
    Sleep 200
  ${Loop}
FunctionEnd
!macroend
!insertmacro WaitForPrograms ""
!insertmacro WaitForPrograms "un."

; Lets the installing user edit the data folder's files without elevation,
; as 2.6.1's setup does. Failure is not fatal: an administrator can still.
Function GrantUserWrite
  ReadEnvStr $0 USERNAME
  ReadEnvStr $1 USERDOMAIN
  ${If} $0 == ""
    Return
  ${EndIf}
  ${If} $1 != ""
    StrCpy $0 "$1\$0"
  ${EndIf}
  nsExec::ExecToLog '"$SYSDIR\icacls.exe" "$DataDir" /grant "$0:(OI)(CI)M"'
  Pop $1
  ${If} $1 != 0
    DetailPrint "Could not give $0 write access to $DataDir ($1)"
  ${EndIf}
FunctionEnd

; emailrelay.auth holds passwords: readable by administrators and the
; service (LocalSystem) only.
Function ProtectSecrets
  nsExec::ExecToLog '"$SYSDIR\icacls.exe" "$DataDir\emailrelay.auth" /inheritance:r /grant:r *S-1-5-32-544:F *S-1-5-18:F'
  Pop $0
  ${If} $0 != 0
    DetailPrint "Could not restrict access to $DataDir\emailrelay.auth ($0)"
  ${EndIf}
FunctionEnd

; emailrelay.cfg from the template, with the chosen folders in place of the
; default ones; an existing file is kept.
Function WriteConfig
  ${If} ${FileExists} "$DataDir\emailrelay.cfg"
    DetailPrint "Keeping $DataDir\emailrelay.cfg"
    Return
  ${EndIf}
  InitPluginsDir
  File "/oname=$PLUGINSDIR\emailrelay.cfg" "${STAGE}/emailrelay.cfg"
  FileOpen $0 "$PLUGINSDIR\emailrelay.cfg" r
  FileOpen $1 "$DataDir\emailrelay.cfg" w
  ${Do}
    ClearErrors
    FileRead $0 $2
    ${If} ${Errors}
      ${Break}
    ${EndIf}
    ${WordReplace} "$2" "${TEMPLATE_DATA}" "$DataDir" "+" $2
    ${WordReplace} "$2" "${TEMPLATE_PROGRAM}" "$INSTDIR" "+" $2
    Push $1
    Push $2
    Push ${CP_UTF8}
    Call WriteEncoded
  ${Loop}
  FileClose $0
  FileClose $1
  DetailPrint "Wrote $DataDir\emailrelay.cfg"
FunctionEnd

; Writes a string to an open file in a code page (NSIS's FileWrite would
; use the ANSI one). Takes the handle, the string and the code page from the
; stack (pushed in that order).
Function WriteEncoded
  Exch $R2
  Exch
  Exch $R1
  Exch 2
  Exch $R0
  Push $R3
  Push $R4
  Push $R5
  Push $R6
  System::Call 'kernel32::WideCharToMultiByte(i R2, i 0, w R1, i -1, p 0, i 0, p 0, p 0) i .R3'
  System::Alloc $R3
  Pop $R4
  System::Call 'kernel32::WideCharToMultiByte(i R2, i 0, w R1, i -1, p R4, i R3, p 0, p 0) i .R3'
  IntOp $R3 $R3 - 1
  System::Call 'kernel32::WriteFile(p R0, p R4, i R3, *i 0 R5, p 0)'
  System::Free $R4
  Pop $R6
  Pop $R5
  Pop $R4
  Pop $R3
  Pop $R0
  Pop $R2
  Pop $R1
FunctionEnd

; emailrelay-start.bat, one line as 2.6.1 writes it:
;     start "emailrelay" <exe> <cfg>
; each path in quotes when it has a space or tab, "%" doubled. An older
; file that differs is kept as emailrelay-start.bat.bak.
Function WriteStartBatch
  Push "$INSTDIR\emailrelay.exe"
  Call BatchWord
  Pop $0
  Push "$DataDir\emailrelay.cfg"
  Call BatchWord
  Pop $1
  StrCpy $2 'start "emailrelay" $0 $1$\r$\n'
  StrCpy $3 "$DataDir\emailrelay-start.bat"
  ${If} ${FileExists} "$3"
    FileOpen $4 "$3" r
    FileRead $4 $5
    FileClose $4
    ${If} $5 == $2
      Return
    ${EndIf}
    Delete "$3.bak"
    Rename "$3" "$3.bak"
    DetailPrint "Kept the old $3 as $3.bak"
  ${EndIf}
  FileOpen $4 "$3" w
  Push $4
  Push $2
  Push ${CP_OEM}
  Call WriteEncoded
  FileClose $4
FunctionEnd

; One path as a batch-file word (2.6.1's rule): quoted if it has a space or
; a tab and no quote, with "%" doubled.
Function BatchWord
  Exch $0
  Push $1
  Push $2
  Push $3
  StrCpy $1 0
  StrCpy $3 ""
  ${Do}
    StrCpy $2 $0 1 $1
    ${If} $2 == ""
      ${Break}
    ${ElseIf} $2 == '"'
      StrCpy $3 "quote"
      ${Break}
    ${ElseIf} $2 == " "
    ${OrIf} $2 == "$\t"
      StrCpy $3 "space"
    ${EndIf}
    IntOp $1 $1 + 1
  ${Loop}
  ${WordReplace} "$0" "%" "%%" "+" $0
  ${If} $3 == "space"
    StrCpy $0 '"$0"'
  ${EndIf}
  Pop $3
  Pop $2
  Pop $1
  Exch $0
FunctionEnd

; emailrelay-service.cfg beside the service wrapper: where its
; emailrelay-start.bat (or emailrelay.cfg) is, as 2.6.1's setup writes it.
Function WriteServiceConfig
  ; 2.6.1 quotes the value when it has a space.
  StrCpy $0 "$DataDir"
  ${WordFind} "$0" " " "E#" $1
  ${IfNot} ${Errors}
    StrCpy $0 '"$0"'
  ${EndIf}
  FileOpen $1 "$INSTDIR\emailrelay-service.cfg" w
  Push $1
  Push "dir-config=$0$\r$\n"
  Push ${CP_UTF8}
  Call WriteEncoded
  FileClose $1
FunctionEnd

; --- The uninstaller ---

Function un.onInit
  SetShellVarContext all
  Call un.ParseArgs
  ReadRegStr $DataDir HKLM "${REGKEY}" "DataDir"
  ${If} $DataDir == ""
    StrCpy $DataDir "$APPDATA\E-MailRelay"
  ${EndIf}
  ${If} $ArgData != ""
    StrCpy $DataDir $ArgData
  ${EndIf}
FunctionEnd

Section "Uninstall"
  ; The service: stopped, then removed (sc.exe if the wrapper is gone).
  ReadRegStr $0 HKLM "${SERVICEKEY}" "ImagePath"
  ${If} $0 != ""
    DetailPrint "Stopping the service ${SERVICE}"
    nsExec::ExecToLog '"$SYSDIR\net.exe" stop ${SERVICE}'
    Pop $0
    DetailPrint "Removing the service ${SERVICE}"
    nsExec::ExecToLog '"$INSTDIR\emailrelay-service.exe" --remove'
    Pop $0
    ReadRegStr $0 HKLM "${SERVICEKEY}" "ImagePath"
    ${If} $0 != ""
      nsExec::ExecToLog '"$SYSDIR\sc.exe" delete ${SERVICE}'
      Pop $0
    ${EndIf}
  ${EndIf}

  ; The program folder: what the installer put there.
  Call un.WaitForPrograms
  Delete "$INSTDIR\emailrelay.exe"
  Delete "$INSTDIR\emailrelay-submit.exe"
  Delete "$INSTDIR\emailrelay-passwd.exe"
  Delete "$INSTDIR\emailrelay-service.exe"
  Delete "$INSTDIR\emailrelay-service.cfg"
  Delete "$INSTDIR\readme-windows.txt"
  Delete "$INSTDIR\examples\emailrelay-*.js"
  RMDir "$INSTDIR\examples"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  ${If} ${FileExists} "$INSTDIR\*.*"
    DetailPrint "Kept $INSTDIR: it holds files the installer did not put there"
  ${EndIf}

  SetShellVarContext all
  RMDir /r "$SMPROGRAMS\E-MailRelay"

  DeleteRegKey HKLM "${EVENTLOGKEY}\emailrelay"
  DeleteRegKey HKLM "${EVENTLOGKEY}\emailrelay-service"
  DeleteRegKey HKLM "${UNINSTKEY}"
  DeleteRegKey HKLM "${REGKEY}"

  ; The data folder goes only if the spool holds no mail.
  Call un.SpoolEntries
  StrCpy $0 $R0
  ${If} $0 == 0
    RMDir "$DataDir\spool"
    Delete "$DataDir\emailrelay.cfg"
    Delete "$DataDir\emailrelay.auth"
    Delete "$DataDir\emailrelay-start.bat"
    Delete "$DataDir\emailrelay-start.bat.bak"
    Delete "$DataDir\emailrelay-uninstall.txt"
    Delete "$DataDir\log-*.txt"
    RMDir "$DataDir"
    ${If} ${FileExists} "$DataDir\*.*"
      DetailPrint "Kept $DataDir: it holds files the installer did not put there"
    ${Else}
      DetailPrint "Removed $DataDir (the spool was empty)"
    ${EndIf}
  ${Else}
    StrCpy $1 "The spool $DataDir\spool still holds mail ($0 files), so the data folder $DataDir was kept, with its configuration. Reinstall E-MailRelay to send the mail on, or delete the folder yourself."
    FileOpen $2 "$DataDir\emailrelay-uninstall.txt" w
    FileWrite $2 "E-MailRelay was uninstalled.$\r$\n$1$\r$\n"
    FileClose $2
    DetailPrint "$1"
    MessageBox MB_OK|MB_ICONINFORMATION "$1" /SD IDOK
  ${EndIf}
SectionEnd

; Leaves in $R0 the number of entries in the spool folder (0 if there is
; none).
Function un.SpoolEntries
  StrCpy $R0 0
  ClearErrors
  FindFirst $R1 $R2 "$DataDir\spool\*.*"
  ${DoUntil} ${Errors}
    ${If} $R2 != "."
    ${AndIf} $R2 != ".."
      IntOp $R0 $R0 + 1
    ${EndIf}
    FindNext $R1 $R2
  ${Loop}
  FindClose $R1
FunctionEnd
